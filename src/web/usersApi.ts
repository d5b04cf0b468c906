/**
 * Account management from the dashboard (the same rules as `sonogate users`, src/web/accounts.ts):
 * admins list, add, change the role of, reset the password of and remove users; every user can
 * change their own password with the current one. Each change is audited with the user name it
 * was about, never a password. A password change or removal ends that user's sessions (their
 * next request answers 401), and the last admin can be neither demoted nor removed.
 */
import type { Request, Response, Router } from 'express';
import type { Accounts } from './accounts';
import type { AuditLog } from './audit';
import { auditRequest, createAuth, currentUser } from './auth';
import { AccountError, Role, verifyPassword } from './passwords';

type Auth = ReturnType<typeof createAuth>;

function field(req: Request, name: string): string | null {
  const v = (req.body ?? {})[name];
  return typeof v === 'string' && v.length <= 200 ? v : null;
}

export function userRoutes(r: Router, deps: { accounts: Accounts; audit: AuditLog; auth: Auth }): void {
  const { accounts, audit, auth } = deps;

  /** Runs an account change; an AccountError (bad name, short password, last admin) answers 400. */
  const attempt = async (req: Request, res: Response, action: string, target: string, fn: () => unknown, detail?: unknown): Promise<boolean> => {
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof AccountError)) throw e;
      auditRequest(audit, req, res, action, 'failed', { target, detail: { message: e.message } });
      res.status(400).json({ error: 'bad_request', message: e.message });
      return false;
    }
    auditRequest(audit, req, res, action, 'ok', { target, detail });
    return true;
  };
  const change = async (req: Request, res: Response, action: string, target: string, fn: () => unknown, detail?: unknown) => {
    if (await attempt(req, res, action, target, fn, detail)) res.json({ ok: true, items: accounts.list() });
  };

  r.get('/users', auth.requireAdmin('users.list'), (_req, res) => {
    res.json({ items: accounts.list() });
  });

  r.post('/users', auth.requireAdmin('user.add'), async (req, res) => {
    const username = field(req, 'username') ?? '';
    const role = field(req, 'role') ?? '';
    const password = field(req, 'password') ?? '';
    await change(req, res, 'user.add', username, () => accounts.add(username, password, role as Role), { role });
  });

  r.post('/users/:name/role', auth.requireAdmin('user.role'), async (req, res) => {
    const name = String(req.params.name);
    const role = field(req, 'role') ?? '';
    await change(req, res, 'user.role', name, () => accounts.setRole(name, role as Role), { role });
  });

  r.post('/users/:name/password', auth.requireAdmin('user.password'), async (req, res) => {
    const name = String(req.params.name);
    await change(req, res, 'user.password', name, () => accounts.setPassword(name, field(req, 'password') ?? ''));
  });

  r.post('/users/:name/delete', auth.requireAdmin('user.remove'), async (req, res) => {
    const name = String(req.params.name);
    // by id: user names are case-insensitive, so "ADMIN" is admin's own account too
    if (accounts.byName(name)?.id === currentUser(res)!.id) {
      auditRequest(audit, req, res, 'user.remove', 'failed', { target: name, detail: { message: 'own account' } });
      res.status(400).json({ error: 'bad_request', message: 'you cannot remove your own account; another admin can' });
      return;
    }
    await change(req, res, 'user.remove', name, () => accounts.remove(name));
  });

  // any signed-in user: their own password, proven with the current one; all their sessions end,
  // this one included (sign in again with the new password)
  r.post('/session/password', auth.currentPasswordLimiter, async (req, res) => {
    const me = currentUser(res)!;
    const cred = accounts.credentials(me.username);
    if (!(await verifyPassword(field(req, 'current') ?? '', cred?.passwordHash ?? null))) {
      auditRequest(audit, req, res, 'user.own_password', 'denied', { target: me.username, detail: { why: 'wrong current password' } });
      res.status(403).json({ error: 'forbidden', message: 'the current password is wrong' });
      return;
    }
    if (!(await attempt(req, res, 'user.own_password', me.username, () => accounts.setPassword(me.username, field(req, 'password') ?? '')))) return;
    // this session ends too (express-session would otherwise save it back after the response)
    req.session.destroy(() => res.json({ ok: true, signedOut: true }));
  });
}
