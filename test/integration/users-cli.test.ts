/**
 * `sonogate users ...` from the built CLI, as an administrator runs it on the server: password
 * on stdin, exit 2 with a message for bad input, every change in the audit log.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from '../helpers/gatewayHarness';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const d = fs.existsSync(CLI) ? describe : describe.skip;

jest.setTimeout(120_000);

d('sonogate users', () => {
  let dir: string;
  let config: string;
  const run = (args: string[], input = '') => spawnSync(process.execPath, [CLI, 'users', ...args, '--config', config], { input, encoding: 'utf8' });

  beforeAll(() => {
    dir = tempDir('users-cli');
    config = path.join(dir, 'config.json');
    fs.writeFileSync(config, JSON.stringify({ dataDir: path.join(dir, 'data') }));
  });

  test('an administrator adds, lists, changes and removes users; the password comes from stdin', () => {
    const add = run(['add', 'alice', '--role', 'admin'], 'alice password 1\n');
    expect([add.status, add.stdout.trim()]).toEqual([0, 'user "alice" added (admin)']);
    expect(run(['add', 'bob', '--role', 'viewer'], 'bob password 12\n').status).toBe(0);
    const list = run(['list', '--json']);
    expect(list.status).toBe(0);
    expect(JSON.parse(list.stdout).map((u: { username: string; role: string }) => [u.username, u.role])).toEqual([
      ['alice', 'admin'],
      ['bob', 'viewer'],
    ]);
    expect(run(['list']).stdout).toMatch(/^USER\s+ROLE\s+CREATED\s+LAST SIGN-IN\nalice\s+admin/);
    expect(run(['passwd', 'bob'], 'new bob password\n').status).toBe(0);
    expect(run(['role', 'bob', 'admin']).status).toBe(0);
    expect(run(['remove', 'alice']).status).toBe(0);
    const db = new Database(path.join(dir, 'data', 'sonogate.db'), { readonly: true });
    const audit = db.prepare('SELECT username, action, target FROM audit_log ORDER BY id').all() as { username: string; action: string; target: string }[];
    db.close();
    expect(audit.map((a) => `${a.action} ${a.target}`)).toEqual(['user.add alice', 'user.add bob', 'user.password bob', 'user.role bob', 'user.remove alice']);
    expect(audit.every((a) => a.username.startsWith('cli'))).toBe(true);
  });

  test('bad input exits 2 with a message saying what is wrong', () => {
    const cases: [string[], string, RegExp][] = [
      [['add', 'carol', '--role', 'superuser'], 'carol password 1\n', /--role must be admin or viewer/],
      [['add', 'carol', '--role', 'viewer'], 'short\n', /at least 10 characters/],
      [['add', 'carol', '--role', 'viewer'], '', /no password on stdin/],
      [['add', 'bob', '--role', 'viewer'], 'bob password 99\n', /exists already/],
      [['remove', 'nobody'], '', /no user "nobody"/],
      [['remove', 'bob'], '', /last admin/],
    ];
    for (const [args, input, message] of cases) {
      const r = run(args, input);
      expect([args.join(' '), r.status]).toEqual([args.join(' '), 2]);
      expect(r.stderr).toMatch(message);
    }
  });
});
