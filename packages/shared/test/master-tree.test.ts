import { describe, expect, it } from 'vitest';
import { UsageError } from '@pacha/shared/errors';
import { checkHostName, isValidHostName, masterHostPaths } from '@pacha/shared/master-tree';

// One rule for host names and one for the host tree, used by the agent, the rebuild and the master.

describe('host names', () => {
  it('accepts what the config accepts, a leading underscore included', () => {
    for (const ok of ['web1', '_web', 'db.example.com', 'a-b_c', 'x'.repeat(253)]) expect(isValidHostName(ok), ok).toBe(true);
    for (const bad of ['', '.hidden', '-x', '..', 'a/b', 'a b', 'é', 'x'.repeat(254)]) expect(isValidHostName(bad), bad).toBe(false);
  });

  it('a bad name is a UsageError that says what is accepted', () => {
    expect(checkHostName('_web')).toBe('_web');
    expect(() => checkHostName('../etc')).toThrow(UsageError);
    expect(() => checkHostName('../etc')).toThrow(/"\.\.\/etc" is not a host name \(accepted: letters, digits/);
  });
});

describe('the host tree', () => {
  it('names repo, hooks and lock under <hosts.path>/<host>', () => {
    expect(masterHostPaths('/pacha/hosts/', 'web1')).toEqual({
      dir: '/pacha/hosts/web1',
      repo: '/pacha/hosts/web1/repo',
      pre: '/pacha/hosts/web1/pacha_pre',
      post: '/pacha/hosts/web1/pacha_post',
      lock: '/pacha/hosts/web1/repo/pacha-push.lock',
    });
  });
});
