/**
 * Password hashing for dashboard accounts: bcrypt (bcryptjs, pure JS, async so a sign-in does not
 * stall the DICOM listener), cost 12 (OWASP's minimum recommendation for bcrypt is 10).
 */
import bcrypt from 'bcryptjs';

export const BCRYPT_COST = 12;
export const MIN_PASSWORD_LENGTH = 10;
export const ROLES = ['admin', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

export class AccountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AccountError';
  }
}

export function isRole(s: unknown): s is Role {
  return typeof s === 'string' && (ROLES as readonly string[]).includes(s);
}

/** Throws an AccountError saying what is wrong with the user name. */
export function checkUsername(name: string): void {
  if (!USERNAME.test(name)) throw new AccountError('a user name is 1–64 characters: letters, digits and _ . @ - (starting with a letter or digit)');
}

/** Throws an AccountError saying what is wrong with the password. */
export function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) throw new AccountError(`a password needs at least ${MIN_PASSWORD_LENGTH} characters`);
  // bcrypt only looks at the first 72 bytes: refuse longer ones rather than silently ignore the rest
  if (bcrypt.truncates(password)) throw new AccountError('a password can be at most 72 bytes (bcrypt)');
}

export function hashPassword(password: string, cost = BCRYPT_COST): Promise<string> {
  return bcrypt.hash(password, cost);
}

/** A hash of nothing in particular: checking against it costs as much as a real check, so a wrong user name takes as long as a wrong password. */
let decoy: string | null = null;

export async function verifyPassword(password: string, hash: string | null): Promise<boolean> {
  if (hash === null) {
    decoy ??= await bcrypt.hash('sonogate-decoy-password', BCRYPT_COST);
    await bcrypt.compare(password, decoy);
    return false;
  }
  try {
    return await bcrypt.compare(password, hash);
  } catch {
    return false;
  }
}
