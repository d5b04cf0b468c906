/**
 * `sonogate users add|list|passwd|role|remove`: dashboard accounts, in the gateway's database
 * (works while the gateway runs: SQLite WAL). Passwords come from stdin when it is not a
 * terminal (first line), else from a prompt that does not echo; never from the command line,
 * where `ps` and shell history would show them.
 */
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config/schema';
import { Store } from '../store/store';
import { Accounts } from '../web/accounts';
import { AuditLog } from '../web/audit';
import { AccountError, isRole, Role } from '../web/passwords';

async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
}

/** Reads a line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    let value = '';
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003' || ch === '\u0004') return done(new AccountError('cancelled'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    const p = await readStdinLine();
    if (!p) throw new AccountError('no password on stdin');
    return p;
  }
  const a = await promptHidden('Password: ');
  const b = await promptHidden('Again: ');
  if (a !== b) throw new AccountError('the two passwords differ');
  return a;
}

function withAccounts<T>(config: Config, fn: (accounts: Accounts, audit: AuditLog) => Promise<T>): Promise<T> {
  const store = Store.open(path.resolve(config.dataDir));
  return fn(new Accounts(store.db), new AuditLog(store.db)).finally(() => store.close());
}

/** Who ran the command, for the audit log. */
function cliUser(): string {
  try {
    return `cli:${os.userInfo().username}`;
  } catch {
    return 'cli';
  }
}

export async function runUsersAdd(config: Config, name: string, role: string): Promise<number> {
  if (!isRole(role)) throw new AccountError(`--role must be admin or viewer, not "${role}"`);
  const password = await readPassword();
  return withAccounts(config, async (accounts, audit) => {
    const u = await accounts.add(name, password, role as Role);
    audit.add({ username: cliUser(), action: 'user.add', outcome: 'ok', target: u.username, detail: { role } });
    process.stdout.write(`user "${u.username}" added (${u.role})\n`);
    return 0;
  });
}

export async function runUsersPasswd(config: Config, name: string): Promise<number> {
  const password = await readPassword();
  return withAccounts(config, async (accounts, audit) => {
    await accounts.setPassword(name, password);
    audit.add({ username: cliUser(), action: 'user.password', outcome: 'ok', target: name });
    process.stdout.write(`password of "${name}" changed; their sessions ended\n`);
    return 0;
  });
}

export async function runUsersRole(config: Config, name: string, role: string): Promise<number> {
  if (!isRole(role)) throw new AccountError(`role must be admin or viewer, not "${role}"`);
  return withAccounts(config, async (accounts, audit) => {
    accounts.setRole(name, role as Role);
    audit.add({ username: cliUser(), action: 'user.role', outcome: 'ok', target: name, detail: { role } });
    process.stdout.write(`"${name}" is now ${role}\n`);
    return 0;
  });
}

export async function runUsersRemove(config: Config, name: string): Promise<number> {
  return withAccounts(config, async (accounts, audit) => {
    accounts.remove(name);
    audit.add({ username: cliUser(), action: 'user.remove', outcome: 'ok', target: name });
    process.stdout.write(`user "${name}" removed; their sessions ended\n`);
    return 0;
  });
}

export async function runUsersList(config: Config, json: boolean): Promise<number> {
  return withAccounts(config, async (accounts) => {
    const users = accounts.list();
    if (json) {
      process.stdout.write(`${JSON.stringify(users)}\n`);
      return 0;
    }
    const when = (t: number | null) => (t ? new Date(t).toISOString().replace('T', ' ').slice(0, 16) : '-');
    const rows = [['USER', 'ROLE', 'CREATED', 'LAST SIGN-IN'], ...users.map((u) => [u.username, u.role, when(u.createdAt), when(u.lastLoginAt)])];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()}\n`);
    if (users.length === 0) process.stdout.write('(no users: add one with `sonogate users add NAME --role admin`)\n');
    return 0;
  });
}
