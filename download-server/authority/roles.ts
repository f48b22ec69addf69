// Who may do what (dissertation Tables 5-1 / 5-2, kept simple). A caller is an API token with a
// role and a scope:
//
//   admin          (scope none)        everything, including API tokens (Table 5-2 "Manage users")
//   site-admin     (scope: site name)  edit its own site, register FullVRs at its site, read the
//                                      routing tables of those FullVRs, create networks (it then
//                                      owns them), join/leave hosts of its own site in any network
//                                      that contains the site
//   network-admin  (scope: network id  create networks (it then owns them); on networks it owns —
//                   or none)           its scope, or ones it created/was made owner of — add sites,
//                                      shut down, delete, merge (owning both), split, join/leave
//                                      hosts, issue/revoke join tokens
//   user           (scope: network id) list, and issue/revoke join tokens for its network
//
// Every authenticated role may list sites, FullVRs, networks, hosts and join tokens (no secrets
// are stored). Unauthenticated requests get 401, authenticated but not allowed 403; neither
// changes anything.
import type { Network, Role, State } from './state.js';

export interface Principal {
  /** API token id ("bootstrap" for the bootstrap admin token). */
  id: string;
  role: Role;
  scope: string | number | null;
}

export type Action =
  | 'list'
  | 'site.register'
  | 'site.update'
  | 'fullvr.register'
  | 'fullvr.tables'
  | 'network.create'
  | 'network.addSite'
  | 'network.shutdown'
  | 'network.delete'
  | 'network.merge'
  | 'network.split'
  | 'host.join'
  | 'host.leave'
  | 'token.create'
  | 'token.revoke'
  | 'apiToken.create'
  | 'apiToken.list'
  | 'changelog';

export interface Target {
  /** Site the action is about (site.update, fullvr.register/tables, host.join/leave). */
  site?: string;
  /** Networks the action touches (all must be allowed). */
  networks?: number[];
}

/** True if `p` has network-admin rights on network `id`. */
export function ownsNetwork(p: Principal, state: State, id: number): boolean {
  if (p.role === 'admin') return true;
  if (p.role === 'user') return false;
  if (p.role === 'network-admin' && p.scope === id) return true;
  const n = state.networks.find((x) => x.id === id);
  return !!n && n.owners.includes(p.id);
}

/** null when allowed, otherwise the one-line reason for a 403. */
export function denied(p: Principal, action: Action, t: Target, state: State): string | null {
  if (p.role === 'admin' || action === 'list') return null;
  const who = `${p.role} token ${p.id}`;
  const nets = t.networks ?? [];
  const ownsAll = nets.length > 0 && nets.every((id) => ownsNetwork(p, state, id));
  const notOwned = () => `${who} does not administer network ${nets.find((id) => !ownsNetwork(p, state, id)) ?? '?'}`;
  switch (action) {
    case 'site.update':
    case 'fullvr.register':
    case 'fullvr.tables':
      return p.role === 'site-admin' && t.site !== undefined && p.scope === t.site ? null : `${who} may not ${verb(action)} site ${JSON.stringify(t.site ?? '?')}`;
    case 'network.create':
      return p.role === 'network-admin' || p.role === 'site-admin' ? null : `${who} may not create networks`;
    case 'network.addSite':
    case 'network.shutdown':
    case 'network.delete':
    case 'network.merge':
    case 'network.split':
      return ownsAll ? null : notOwned();
    case 'host.join':
    case 'host.leave': {
      if (ownsAll) return null;
      if (p.role === 'site-admin' && t.site !== undefined && p.scope === t.site) {
        const n: Network | undefined = state.networks.find((x) => x.id === nets[0]);
        if (n && n.sites.includes(t.site)) return null;
      }
      return `${who} may not change members of network ${nets[0] ?? '?'}${t.site ? ` at site ${JSON.stringify(t.site)}` : ''}`;
    }
    case 'token.create':
    case 'token.revoke':
      if (ownsAll) return null;
      if (p.role === 'user' && nets.length === 1 && p.scope === nets[0]) return null;
      return `${who} may not manage join tokens of network ${nets[0] ?? '?'}`;
    case 'site.register':
    case 'apiToken.create':
    case 'apiToken.list':
    case 'changelog':
      return `${who} may not ${verb(action)} (admin only)`;
  }
}

function verb(a: Action): string {
  switch (a) {
    case 'site.update':
      return 'edit';
    case 'fullvr.register':
      return 'register FullVRs at';
    case 'fullvr.tables':
      return 'read routing tables of FullVRs at';
    case 'site.register':
      return 'register sites';
    case 'apiToken.create':
      return 'create API tokens';
    case 'apiToken.list':
      return 'list API tokens';
    case 'changelog':
      return 'read the changelog';
    default:
      return a;
  }
}
