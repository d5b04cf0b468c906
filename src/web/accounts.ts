/**
 * Dashboard accounts (users table, migration 2) on the gateway's SQLite handle. Shared by the web
 * server and `sonogate users`. A password change or removal also ends the user's sessions.
 */
import crypto from 'node:crypto';
import type Database from 'better-sqlite3';
import { AccountError, Role, checkPassword, checkUsername, hashPassword, isRole } from './passwords';

export interface User {
  id: number;
  username: string;
  role: Role;
  createdAt: number;
  updatedAt: number;
  lastLoginAt: number | null;
}

interface UserWithHash extends User {
  passwordHash: string;
}

const USER_COLUMNS = 'id, username, role, created_at AS createdAt, updated_at AS updatedAt, last_login_at AS lastLoginAt';

export class Accounts {
  constructor(private readonly db: Database.Database) {}

  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM users').get() as { n: number }).n;
  }

  list(): User[] {
    return this.db.prepare(`SELECT ${USER_COLUMNS} FROM users ORDER BY username`).all() as User[];
  }

  byId(id: number): User | undefined {
    return this.db.prepare(`SELECT ${USER_COLUMNS} FROM users WHERE id = ?`).get(id) as User | undefined;
  }

  byName(username: string): User | undefined {
    return this.db.prepare(`SELECT ${USER_COLUMNS} FROM users WHERE username = ?`).get(username) as User | undefined;
  }

  /** The user and their hash, for a sign-in (case-insensitive user name). */
  credentials(username: string): UserWithHash | undefined {
    return this.db.prepare(`SELECT ${USER_COLUMNS}, password_hash AS passwordHash FROM users WHERE username = ?`).get(username) as UserWithHash | undefined;
  }

  async add(username: string, password: string, role: Role, now = Date.now()): Promise<User> {
    checkUsername(username);
    if (!isRole(role)) throw new AccountError(`role must be admin or viewer, not "${role}"`);
    checkPassword(password);
    if (this.byName(username)) throw new AccountError(`user "${username}" exists already`);
    const hash = await hashPassword(password);
    try {
      const r = this.db
        .prepare('INSERT INTO users (username, password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?)')
        .run(username, hash, role, now, now);
      return this.byId(Number(r.lastInsertRowid))!;
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new AccountError(`user "${username}" exists already`);
      throw e;
    }
  }

  /**
   * The first admin, from SONOGATE_ADMIN_PASSWORD: only while no user exists at all, in one
   * transaction so two starts cannot both create one.
   */
  async addFirstAdmin(username: string, password: string, now = Date.now()): Promise<User | null> {
    checkUsername(username);
    checkPassword(password);
    if (this.count() > 0) return null;
    const hash = await hashPassword(password);
    return this.db.transaction((): User | null => {
      if (this.count() > 0) return null;
      const r = this.db.prepare("INSERT INTO users (username, password_hash, role, created_at, updated_at) VALUES (?, ?, 'admin', ?, ?)").run(username, hash, now, now);
      return this.byId(Number(r.lastInsertRowid))!;
    })();
  }

  async setPassword(username: string, password: string, now = Date.now()): Promise<void> {
    checkPassword(password);
    const u = this.byName(username);
    if (!u) throw new AccountError(`no user "${username}"`);
    const hash = await hashPassword(password);
    this.db.transaction(() => {
      this.db.prepare('UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?').run(hash, now, u.id);
      this.db.prepare('DELETE FROM sessions WHERE user_id = ?').run(u.id);
    })();
  }

  setRole(username: string, role: Role, now = Date.now()): void {
    if (!isRole(role)) throw new AccountError(`role must be admin or viewer, not "${role}"`);
    const u = this.byName(username);
    if (!u) throw new AccountError(`no user "${username}"`);
    if (u.role === 'admin' && role !== 'admin') this.keepOneAdmin(u.id);
    this.db.prepare('UPDATE users SET role = ?, updated_at = ? WHERE id = ?').run(role, now, u.id);
  }

  remove(username: string): void {
    const u = this.byName(username);
    if (!u) throw new AccountError(`no user "${username}"`);
    if (u.role === 'admin') this.keepOneAdmin(u.id);
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM sessions WHERE user_id = ?').run(u.id);
      this.db.prepare('DELETE FROM users WHERE id = ?').run(u.id);
    })();
  }

  touchLogin(id: number, now = Date.now()): void {
    this.db.prepare('UPDATE users SET last_login_at = ? WHERE id = ?').run(now, id);
  }

  /** Nobody could administer the gateway from the dashboard any more. */
  private keepOneAdmin(exceptId: number): void {
    const others = (this.db.prepare("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND id != ?").get(exceptId) as { n: number }).n;
    if (others === 0) throw new AccountError('this is the last admin: add another admin first');
  }
}

/** Small persistent settings of the dashboard (web_settings). */
export function getSetting(db: Database.Database, key: string): string | undefined {
  return (db.prepare('SELECT value FROM web_settings WHERE key = ?').get(key) as { value: string } | undefined)?.value;
}

/**
 * The secret that signs session cookies: SONOGATE_SESSION_SECRET when set (several, comma
 * separated, to rotate: the first signs), else a random one generated once and kept in the
 * database, so sessions survive a restart without anyone having to invent a secret.
 */
export function sessionSecrets(db: Database.Database, env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = (env.SONOGATE_SESSION_SECRET ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (fromEnv.length) {
    if (fromEnv[0].length < 32) throw new AccountError('SONOGATE_SESSION_SECRET must be at least 32 characters');
    return fromEnv;
  }
  db.prepare('INSERT OR IGNORE INTO web_settings (key, value) VALUES (?, ?)').run('session_secret', crypto.randomBytes(48).toString('base64url'));
  return [getSetting(db, 'session_secret')!];
}
