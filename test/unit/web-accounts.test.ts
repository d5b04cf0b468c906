/**
 * Dashboard accounts and sessions on a real store: no default password, bcrypt hashes, weak
 * passwords refused, always one admin left, a password change or removal ends sessions, the
 * first admin from SONOGATE_ADMIN_PASSWORD only once.
 */
import type { SessionData } from 'express-session';
import { parseConfig } from '../../src/config/load';
import { Store } from '../../src/store/store';
import { Accounts, sessionSecrets } from '../../src/web/accounts';
import { AuditLog } from '../../src/web/audit';
import { verifyPassword } from '../../src/web/passwords';
import { bootstrapFirstAdmin } from '../../src/web/server';
import { SqliteSessionStore } from '../../src/web/sessionStore';
import { silentLogger, tempDir } from '../helpers/gatewayHarness';

jest.setTimeout(60_000);

function open() {
  const store = Store.open(tempDir('accounts'));
  return { store, accounts: new Accounts(store.db), audit: new AuditLog(store.db) };
}

const get = (s: SqliteSessionStore, sid: string) => new Promise<SessionData | null | undefined>((res, rej) => s.get(sid, (e, v) => (e ? rej(e) : res(v))));
const set = (s: SqliteSessionStore, sid: string, v: Partial<SessionData>) =>
  new Promise<void>((res, rej) => s.set(sid, { cookie: { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000) }, ...v } as SessionData, (e) => (e ? rej(e) : res())));

test('there is no default account; a user is stored with a bcrypt hash, never the password', async () => {
  const { store, accounts } = open();
  expect(accounts.count()).toBe(0);
  await accounts.add('Alice', 'a long enough password', 'admin');
  const row = store.db.prepare('SELECT * FROM users').get() as Record<string, unknown>;
  expect(String(row.password_hash)).toMatch(/^\$2[aby]\$12\$/);
  expect(JSON.stringify(row)).not.toContain('a long enough password');
  const cred = accounts.credentials('alice')!; // user names are case-insensitive
  expect(await verifyPassword('a long enough password', cred.passwordHash)).toBe(true);
  expect(await verifyPassword('a long enough passworD', cred.passwordHash)).toBe(false);
  expect(await verifyPassword('anything', null)).toBe(false);
  store.close();
});

test('short passwords, bad user names, unknown roles and duplicates are refused', async () => {
  const { store, accounts } = open();
  await expect(accounts.add('bob', 'short', 'viewer')).rejects.toThrow(/at least 10/);
  await expect(accounts.add('bob smith', 'long enough pw', 'viewer')).rejects.toThrow(/user name/);
  await expect(accounts.add('bob', 'long enough pw', 'root' as never)).rejects.toThrow(/admin or viewer/);
  await expect(accounts.add('bob', 'x'.repeat(80), 'viewer')).rejects.toThrow(/72 bytes/);
  await accounts.add('bob', 'long enough pw', 'viewer');
  await expect(accounts.add('BOB', 'long enough pw', 'viewer')).rejects.toThrow(/exists/);
  store.close();
});

test('the last admin can be neither removed nor made a viewer', async () => {
  const { store, accounts } = open();
  await accounts.add('root', 'long enough pw', 'admin');
  await accounts.add('eve', 'long enough pw', 'viewer');
  expect(() => accounts.remove('root')).toThrow(/last admin/);
  expect(() => accounts.setRole('root', 'viewer')).toThrow(/last admin/);
  accounts.setRole('eve', 'admin');
  accounts.setRole('root', 'viewer');
  expect(accounts.byName('root')!.role).toBe('viewer');
  accounts.remove('root');
  expect(accounts.list().map((u) => u.username)).toEqual(['eve']);
  store.close();
});

test('a password change, a removal or a logout ends a session for good, even one whose request is still in flight; session rows are keyed by a hash of the id and expire', async () => {
  const { store, accounts } = open();
  const a = await accounts.add('anna', 'long enough pw', 'admin');
  const b = await accounts.add('ben', 'long enough pw', 'admin');
  const sessions = new SqliteSessionStore(store.db, 60_000);
  // only the sign-in's save (fresh) creates a row
  await set(sessions, 'sid-anna', { userId: a.id, csrf: 't1', fresh: true });
  await set(sessions, 'sid-ben', { userId: b.id, csrf: 't2', fresh: true });
  await set(sessions, 'sid-never-signed-in', { userId: a.id, csrf: 't3' });
  expect(await get(sessions, 'sid-never-signed-in')).toBeNull();
  expect(await get(sessions, 'sid-anna')).toEqual(expect.objectContaining({ csrf: 't1' }));
  expect((await get(sessions, 'sid-anna'))!.fresh).toBeUndefined();
  await set(sessions, 'sid-anna', { userId: a.id, csrf: 't1', lastActiveAt: 5 });
  expect((await get(sessions, 'sid-anna'))!.lastActiveAt).toBe(5);
  expect(store.db.prepare("SELECT COUNT(*) AS n FROM sessions WHERE sid LIKE 'sid-%'").get()).toEqual({ n: 0 });
  await accounts.setPassword('anna', 'another long password');
  expect(await get(sessions, 'sid-anna')).toBeNull();
  // a request that was in flight during the reset saves its session when it ends: it stays gone
  await set(sessions, 'sid-anna', { userId: a.id, csrf: 't1', lastActiveAt: 6 });
  expect(await get(sessions, 'sid-anna')).toBeNull();
  expect((await get(sessions, 'sid-ben'))!.csrf).toBe('t2');
  accounts.remove('ben');
  expect(await get(sessions, 'sid-ben')).toBeNull();
  await set(sessions, 'sid-ben', { userId: b.id, csrf: 't2' });
  expect(await get(sessions, 'sid-ben')).toBeNull();
  // and so does one that was in flight during a logout (destroy)
  await set(sessions, 'sid-c', { userId: a.id, csrf: 't4', fresh: true });
  await new Promise<void>((res) => sessions.destroy('sid-c', () => res()));
  await set(sessions, 'sid-c', { userId: a.id, csrf: 't4' });
  expect(await get(sessions, 'sid-c')).toBeNull();
  await set(sessions, 'old', { userId: a.id, fresh: true, cookie: { originalMaxAge: 1, expires: new Date(Date.now() - 1000) } as never });
  expect(await get(sessions, 'old')).toBeNull();
  expect(sessions.prune()).toBe(1);
  sessions.close();
  store.close();
});

test('the first admin comes from SONOGATE_ADMIN_PASSWORD only while there is no user, and the variable is cleared', async () => {
  const { store, accounts, audit } = open();
  const env: NodeJS.ProcessEnv = { SONOGATE_ADMIN_PASSWORD: 'first admin password' };
  await bootstrapFirstAdmin(accounts, audit, env, silentLogger());
  expect(env.SONOGATE_ADMIN_PASSWORD).toBeUndefined();
  expect(accounts.list()).toEqual([expect.objectContaining({ username: 'admin', role: 'admin' })]);
  await bootstrapFirstAdmin(accounts, audit, { SONOGATE_ADMIN_PASSWORD: 'second password here', SONOGATE_ADMIN_USER: 'other' }, silentLogger());
  expect(accounts.count()).toBe(1);
  expect(await verifyPassword('first admin password', accounts.credentials('admin')!.passwordHash)).toBe(true);
  expect(audit.list().items[0]).toMatchObject({ action: 'user.add', target: 'admin', username: 'system' });
  store.close();
});

test('the session secret comes from the environment, else is generated once and kept', () => {
  const { store } = open();
  const generated = sessionSecrets(store.db, {});
  expect(generated[0].length).toBeGreaterThanOrEqual(32);
  expect(sessionSecrets(store.db, {})).toEqual(generated);
  expect(sessionSecrets(store.db, { SONOGATE_SESSION_SECRET: 'n'.repeat(40) + ',' + 'o'.repeat(40) })).toEqual(['n'.repeat(40), 'o'.repeat(40)]);
  expect(() => sessionSecrets(store.db, { SONOGATE_SESSION_SECRET: 'short' })).toThrow(/32/);
  store.close();
});

test('http.trustProxy true is refused (any client could forge its address); a hop count or the proxies\' addresses are taken', () => {
  expect(() => parseConfig({ http: { trustProxy: true } })).toThrow(/http\.trustProxy: true would trust any X-Forwarded-For/);
  expect(parseConfig({ http: { trustProxy: 1 } }).http.trustProxy).toBe(1);
  expect(parseConfig({ http: { trustProxy: 'loopback' } }).http.trustProxy).toBe('loopback');
  expect(parseConfig({ http: { trustProxy: '10.1.2.5, 10.2.0.0/16, loopback, ::1' } }).http.trustProxy).toBe('10.1.2.5, 10.2.0.0/16, loopback, ::1');
  // a string express cannot use fails at start naming the key, not as a stack trace later
  expect(() => parseConfig({ http: { trustProxy: 'foo bar' } })).toThrow(/http\.trustProxy: give the proxies' addresses/);
  expect(() => parseConfig({ http: { trustProxy: '10.0.0.0/40' } })).toThrow(/http\.trustProxy/);
  expect(parseConfig({}).http.trustProxy).toBe(false);
});

test('http.secureCookie true without a trusted proxy is refused: the dashboard speaks HTTP, so no cookie would ever be set', () => {
  expect(() => parseConfig({ http: { secureCookie: true } })).toThrow(/http\.secureCookie: true needs http\.trustProxy/);
  expect(parseConfig({ http: { secureCookie: true, trustProxy: 1 } }).http.secureCookie).toBe(true);
  expect(parseConfig({ http: { secureCookie: false } }).http.secureCookie).toBe(false);
});
