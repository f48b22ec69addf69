// A FullVR: one UDP port for TinyVRs and peer FullVRs, the routing tables, and an
// optional TUN through which hosts on its LAN (running no TinyViNe software) reach the overlay.
import type { Server } from 'node:http';
import { formatEndpoint, parseEndpoint } from '../shared/cidr.js';
import { consumeInit, HandshakeError, InitReplayGuard, loadPrivateKey, publicKeyOf, loadPublicKey, type StaticKey } from '../shared/handshake.js';
import { log } from '../shared/log.js';
import { checkRoot, checkTunDevice, NetChanges } from '../shared/os-net.js';
import {
  AuthMode,
  Kind,
  M,
  META_FIELDS,
  PacketBatch,
  PacketEngine,
  PUMP_CONTROL,
  SLOT_SIZE,
  closeFd,
  gmacImpl,
  monotonicMs,
  openTun,
  openUdp,
} from '../shared/packet-engine.js';
import { RoutingTables } from '../shared/routing-tables.js';
import { SessionIndexAllocator } from '../shared/session-index.js';
import { startStatusServer } from '../shared/status-server.js';
import { UserError } from '../shared/user-error.js';
import { MsgType, decodeError, encodeError } from '../shared/wire.js';
import { authModeOf, strongestMode, tunMtu } from '../shared/auth-mode.js';
import type { FullvrConfig, FullvrNetworkConfig } from './config.js';
import { SHORTCUT_KEEPALIVE_MS, SHORTCUT_SILENCE_MS, type ShortcutOffer } from '../shared/shortcut-offer.js';
import { FullvrDatapath, SessionKind } from './datapath.js';
import { Members } from './members.js';
import { Peers } from './peers.js';
import { FullvrTokens, type TokenVerifier } from './tokens.js';
import { MemberTickets } from './tickets.js';
import { ShortcutTickets } from './shortcut-tickets.js';
import { startHeartbeats, type HeartbeatBody } from './heartbeat.js';
import { startTcpAcceptor, startTcpConnector } from './tcp-fallback.js';
import { SessionControl } from '../shared/session-control.js';
import { cidrContains } from '../shared/cidr.js';
import { subscribeTables } from './table-subscription.js';
import { DirectIntros } from './direct-intros.js';
import { verifyTables, type TablesBody } from '../shared/signed-tables.js';
import { parseFullvrConfig } from './config.js';
import { key as memberKey } from './members.js';
import { loadVerifyKey } from '../shared/join-token.js';

// Room for a whole TSO super-packet or UDP GRO message split into segments (≤ ~45 at MTU 1432).
const BATCH = 256;
/** Sentinel session index in a refusal RESP: no session was created. */
const NO_SESSION = 0xffffffff;

export class FullVR {
  readonly tables = new RoutingTables();
  readonly datapath: FullvrDatapath;
  readonly members: Members;
  readonly tokens: TokenVerifier;
  peers!: Peers;
  readonly staticKey: StaticKey;
  readonly publicKey: string;
  private indices = new SessionIndexAllocator();
  private engine!: PacketEngine;
  private udpBatch = new PacketBatch(BATCH);
  private tunBatch = new PacketBatch(BATCH);
  private net = new NetChanges();
  private timers: NodeJS.Timeout[] = [];
  private statusServer: Server | null = null;
  private guard = new InitReplayGuard();
  private errorBudget = 100;
  private refusals: Record<string, number> = {};
  private counters = { ctrl_rejected: 0, host_routes: 0, tables_applied: 0, tables_rejected: 0, joins: 0, shortcut_joins: 0, joins_refused: 0, handshakes_failed: 0, members_expired: 0, members_left: 0, errors_sent: 0 };
  private readonly mtu: number;
  private peerMode: AuthMode;
  private readonly networks = new Map<number, FullvrConfig['networks'][number]>();
  private tablesVersion = 0;
  private tablesAppliedAt: string | null = null;
  private stopTables: (() => void) | null = null;
  private stopped = false;
  private stopHeartbeats: (() => void) | null = null;
  private cleanups: Array<() => void> = [];
  private control: SessionControl;
  /** Members that failed over to another FullVR: network -> address -> serving VR (host routes). */
  private hostRoutes = new Map<number, Map<string, number>>();
  private readonly shortcuts: ShortcutTickets;
  private readonly intros: DirectIntros | null;
  private started = false;

  constructor(
    private cfg: FullvrConfig,
    tokens?: TokenVerifier,
  ) {
    this.staticKey = loadPrivateKey(cfg.privateKey);
    this.publicKey = publicKeyOf(this.staticKey);
    const listen = parseEndpoint(cfg.listen);
    this.mtu = tunMtu(cfg.pathMtu, listen.host.includes(':') ? 6 : 4);
    const networks = this.networks;
    for (const n of cfg.networks) networks.set(n.id, n);
    for (const n of cfg.networks) this.tables.setGndt(n.id, n.sites.map((s) => ({ subnet: s.subnet, vr: s.vr })));
    for (const n of cfg.networks) for (const p of n.lan ?? []) this.tables.addLanPrefix(p, n.id);
    for (const p of cfg.peers) {
      if (!p.endpoint) continue; // limited peer: reached only over the session it opens
      const ep = parseEndpoint(p.endpoint);
      this.tables.setPeer(p.id, { host: ep.host, port: ep.port, publicKey: p.publicKey });
    }
    this.datapath = new FullvrDatapath(this.tables, cfg.id, BATCH);
    this.control = new SessionControl(cfg.id);
    this.tokens =
      tokens ??
      new FullvrTokens({
        statics: cfg.tokens,
        authorityKey: cfg.authority ? loadVerifyKey(cfg.authority.publicKey) : undefined,
        selfId: cfg.id,
        servedNetworks: new Set(cfg.networks.map((n) => n.id)),
        stateDir: cfg.stateDir,
      });
    // Peer keys are looked up in the current config: authority tables may replace the peers.
    this.shortcuts = new ShortcutTickets(this.staticKey, cfg.id, (id) => {
      const p = this.cfg.peers.find((x) => x.id === id);
      return p ? loadPublicKey(p.publicKey) : undefined;
    });
    const shortcuts = cfg.shortcuts ? this.shortcuts : null;
    this.members = new Members(cfg.id, networks, this.tables, this.tokens, this.mtu, new MemberTickets(cfg.privateKey, cfg.id), shortcuts);
    this.intros = cfg.directPaths ? new DirectIntros({ members: this.members, send: (s, p) => this.control.send(this.engine, s, p) }) : null;
    if (this.intros) this.datapath.onMemberPair = (from, to) => this.intros!.forwarded(from, to);
    // One session per peer carries every network, so it uses the strongest mode any of them asks for.
    this.peerMode = strongestMode(cfg.networks.map((n) => authModeOf(n.auth)));
  }

  get lanPrefixes(): string[] {
    return this.cfg.networks.flatMap((n) => n.lan ?? []);
  }

  async start(): Promise<void> {
    const listen = parseEndpoint(this.cfg.listen);
    const needTun = this.lanPrefixes.length > 0;
    if (needTun) {
      checkRoot('a FullVR serving a LAN');
      checkTunDevice();
    }
    let udpFd = -1;
    let tunFd = -1;
    let tunOffload = false;
    try {
      udpFd = openUdp(listen.host, listen.port).fd;
      if (needTun) {
        const tun = openTun(this.cfg.tun?.name ?? 'tvn0', { offload: true });
        if (!tun.offload) log.warn('TUN offload unavailable, using plain packets', { error: tun.offloadError });
        tunOffload = tun.offload;
        tunFd = tun.fd;
        this.setupLan(tun.name);
      }
      this.engine = new PacketEngine({ udpFd, tunFd: tunFd >= 0 ? tunFd : undefined, mtu: this.mtu, tunOffload });
      this.engine.setModeration(this.cfg.moderationMicros);

    } catch (e) {
      this.net.rollback();
      if (tunFd >= 0) closeFd(tunFd);
      if (udpFd >= 0) closeFd(udpFd);
      throw e instanceof UserError ? e : new UserError(`fullvr: ${(e as Error).message}`);
    }
    this.peers = new Peers(
      this.cfg.id,
      this.staticKey,
      this.engine,
      this.indices,
      this.datapath,
      this.peerMode,
      this.cfg.keepaliveSeconds * 1000,
      this.cfg.peers.map((p) => {
        const ep = p.endpoint ? parseEndpoint(p.endpoint) : { host: '', port: 0 };
        return { id: p.id, host: ep.host, port: ep.port, publicKey: loadPublicKey(p.publicKey), publicKeyB64: p.publicKey, limited: p.limited };
      }),
      this.control,
    );
    for (const id of this.peers.limitedPeers()) this.datapath.relayFor.add(id);
    if (this.cfg.queueVr) this.datapath.queueVr = this.cfg.queueVr.id;
    const dp = this.datapath;
    // The engine forwards packets of flows it has a verdict for by itself; JS decides
    // (and so routes) the rest and handles control messages after the batch was forwarded.
    const udpFlags = new Uint8Array(this.udpBatch.capacity);
    this.engine.routeUdpNative(this.udpBatch, dp.cacheGen, udpFlags, (r) => {
      if (r & PUMP_CONTROL) this.afterUdpBatch(this.udpBatch);
      else dp.decideUdp(this.udpBatch, r, udpFlags);
    });
    if (tunFd >= 0) {
      const tunFlags = new Uint8Array(this.tunBatch.capacity);
      this.engine.routeTunNative(this.tunBatch, dp.cacheGen, tunFlags, (n) => dp.decideTun(this.tunBatch, n, tunFlags));
    }
    if (this.cfg.control) {
      try {
        this.statusServer = await startStatusServer(this.cfg.control, () => this.status());
      } catch (e) {
        this.stop();
        throw e;
      }
    }
    this.peers.startAll();
    await this.startTcpFallback(listen);
    const ka = this.cfg.keepaliveSeconds * 1000;
    this.timers.push(setInterval(() => this.peers.tick(), ka));
    this.timers.push(setInterval(() => this.expireMembers(), Math.min(ka, 10_000)));
    // A shortcut member that went silent must stop attracting its site's replies at once.
    this.timers.push(setInterval(() => this.expireMembers(true), SHORTCUT_KEEPALIVE_MS));
    this.timers.push(setInterval(() => (this.errorBudget = 100), 1000));
    if (this.cfg.authority?.managed && this.cfg.authority.url) {
      const pub = loadVerifyKey(this.cfg.authority.publicKey);
      this.stopTables = subscribeTables({
        url: this.cfg.authority.url,
        id: this.cfg.id,
        apiToken: this.cfg.authority.apiToken,
        onMessage: (m) => {
          try {
            this.applyTables(verifyTables(pub, m, this.cfg.id, this.tablesVersion));
          } catch (e) {
            this.counters.tables_rejected++;
            log.warn('tables rejected', { error: (e as Error).message });
          }
        },
      });
    }
    if (this.cfg.authority?.url) {
      this.stopHeartbeats = startHeartbeats({
        url: this.cfg.authority.url,
        apiToken: this.cfg.authority.apiToken,
        id: this.cfg.id,
        everyMs: this.cfg.authority.heartbeatSeconds * 1000,
        body: () => this.heartbeat(),
      });
    }
    this.started = true;
    const feat = this.engine.features();
    log.info('fullvr ready', {
      offloads: `tun=${feat.tunOffload} gro=${feat.udpGro} gso=${feat.udpGso}`,
      gmac: gmacImpl(),
      id: this.cfg.id,
      listen: this.cfg.listen,
      publicKey: this.publicKey,
      mtu: this.mtu,
      networks: this.cfg.networks.map((n) => n.id).join(','),
      lan: this.lanPrefixes.join(',') || undefined,
    });
  }

  /**
   * Queue-VR: accept limited-VRs over TCP on our port, for networks that block UDP.
   * Limited-VR: if no UDP session with the queue-VR comes up in time, carry it over TCP.
   */
  private async startTcpFallback(listen: { host: string; port: number }): Promise<void> {
    if (this.peers.limitedPeers().length) {
      try {
        this.cleanups.push(await startTcpAcceptor(listen));
      } catch (e) {
        log.warn('tcp fallback for limited-VRs unavailable', { error: (e as Error).message });
      }
    }
    const q = this.cfg.queueVr;
    const peer = q ? this.cfg.peers.find((p) => p.id === q.id) : undefined;
    if (!q || !peer?.endpoint) return;
    const t = setTimeout(async () => {
      if (this.stopped || this.peers.isUp(q.id)) return;
      const ep = parseEndpoint(peer.endpoint!);
      log.warn('no UDP session with the queue-VR, falling back to TCP', { queueVr: q.id, endpoint: peer.endpoint, afterSeconds: q.tcpFallbackSeconds });
      try {
        const c = await startTcpConnector({ host: ep.host, port: ep.port }, listen);
        this.cleanups.push(c.stop);
        this.peers.redirect(q.id, c.endpoint.host, c.endpoint.port);
      } catch (e) {
        log.error('tcp fallback failed', { error: (e as Error).message });
      }
    }, q.tcpFallbackSeconds * 1000);
    t.unref();
    this.timers.push(t);
  }

  private setupLan(dev: string): void {
    this.net.linkUp(dev, this.mtu);
    // Everything a LAN host may reach across the overlay: other sites of networks this LAN is in.
    const routes = new Set<string>();
    for (const n of this.cfg.networks) {
      if (!n.lan?.length) continue;
      for (const s of n.sites) if (s.vr !== this.cfg.id) routes.add(s.subnet);
      if (n.mode === 'virtual' && n.overlay) routes.add(n.overlay);
    }
    for (const r of routes) this.net.addRoute(r, dev);
    this.net.sysctl('net.ipv4.ip_forward', '1');
    if (this.lanPrefixes.some((p) => p.includes(':'))) this.net.sysctl('net.ipv6.conf.all.forwarding', '1');
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.stopHeartbeats?.();
    this.stopTables?.();
    for (const c of this.cleanups) c();
    this.peers?.stopAll();
    this.statusServer?.close();
    this.engine?.close();
    const errs = this.net.rollback();
    for (const e of errs) log.warn('cleanup', { error: e });
    if (this.started) log.info('fullvr stopped', { id: this.cfg.id });
  }

  private afterUdpBatch(batch: PacketBatch): void {
    const dp = this.datapath;
    for (let k = 0; k < dp.controlCount; k++) this.onControl(batch, dp.controlSlots[k]);
    for (let k = 0; k < dp.errorCount; k++) this.answerUnknownSession(batch, dp.errorSlots[k]);
  }

  private onControl(batch: PacketBatch, i: number): void {
    const b = i * META_FIELDS;
    const meta = batch.meta;
    if (meta[b + M.KIND] === Kind.KEEPALIVE) {
      const s = meta[b + M.SESSION];
      // Members learn we are alive from our answer; peers send their own keepalives.
      if (this.datapath.sessionKind[s] === SessionKind.MEMBER) this.engine.sendKeepalive(s);
      else if (this.datapath.sessionKind[s] === SessionKind.VR) this.peers.confirm(s);
      return;
    }
    const off = i * SLOT_SIZE + meta[b + M.OFF];
    const msg = Buffer.from(batch.buf.subarray(off, off + meta[b + M.LEN]));
    const { host, port } = batch.addrString(i);
    switch (meta[b + M.TYPE]) {
      case MsgType.INIT:
        this.onInit(msg, host, port);
        break;
      case MsgType.RESP:
        this.peers.handleResp(msg.readUInt32BE(4), msg);
        break;
      case MsgType.QUEUE: {
        const c = this.control.decode(msg);
        if (!c) this.counters.ctrl_rejected++;
        else if (this.datapath.sessionKind[c.session] === SessionKind.MEMBER) {
          // A member asking to be introduced again to a peer it knew (its NAT mapping expired).
          if (c.payload.op === 'direct') this.intros?.asked(c.session, c.payload.addr, c.payload.key);
          else if (c.payload.op === 'bye') this.memberLeft(c.session);
        } else this.onPeerControl(c.vr, c.payload);
        break;
      }
      case MsgType.ERROR: {
        try {
          const e = decodeError(msg);
          this.peers.onUnknownSession(e.receiverIndex, host);
        } catch {
          /* malformed: ignore */
        }
        break;
      }
    }
  }

  private onInit(msg: Buffer, host: string, port: number): void {
    let init;
    try {
      init = consumeInit({
        responder: this.staticKey,
        message: msg,
        isKnownInitiator: (k) => this.peers.peerByKey(k) !== null,
        guard: this.guard,
      });
    } catch (e) {
      if (!(e instanceof HandshakeError)) throw e;
      this.counters.handshakes_failed++;
      log.debug('handshake rejected', { from: `${host}:${port}`, reason: e.message });
      return;
    }
    if (init.initiatorStatic) {
      const peerId = this.peers.peerByKey(init.initiatorStatic)!;
      const index = this.indices.allocate();
      const r = init.respond({ index, senderId: this.cfg.id, payload: { mode: this.peerMode } });
      this.peers.accept(peerId, index, init.remoteIndex, r.txKey, r.rxKey, host, port);
      this.engine.sendRaw(host, port, r.message);
      return;
    }
    const adm = this.members.admit(init.payload);
    if ('error' in adm) {
      this.counters.joins_refused++;
      this.refusals[adm.reason] = (this.refusals[adm.reason] ?? 0) + 1;
      log.warn('join refused', { from: `${host}:${port}`, reason: adm.error });
      const r = init.respond({ index: NO_SESSION, senderId: this.cfg.id, payload: { error: adm.error } });
      this.engine.sendRaw(host, port, r.message);
      return;
    }
    const index = this.indices.allocate();
    const net = this.cfg.networks.find((n) => n.id === adm.answer.network)!;
    const home = net.sites.some((s) => s.vr === this.cfg.id && safeContains(s.subnet, adm.answer.address));
    const offers = home && !adm.shortcut ? this.shortcutOffers(net, adm.answer.addresses) : [];
    const r = init.respond({
      index,
      senderId: this.cfg.id,
      payload: { ...adm.answer, memberId: index, keepaliveSeconds: this.cfg.keepaliveSeconds, auth: net.auth, ...(offers.length ? { shortcuts: offers } : {}) },
    });
    // Install the session before answering so the member's first packet is accepted.
    this.engine.setSession(index, {
      peerHost: host,
      peerPort: port,
      remoteIndex: init.remoteIndex,
      senderId: this.cfg.id,
      mode: authModeOf(net.auth),
      txKey: r.txKey,
      rxKey: r.rxKey,
    });
    this.datapath.setSessionKind(index, SessionKind.MEMBER);
    this.datapath.setSessionNetwork(index, net.id);
    // As parseEndpoint reads it back (a rejoin request, a direct-path introduction).
    const replaced = this.members.commit(index, adm.answer, adm.physical, formatEndpoint(host, port), adm.grant, adm.shortcut);
    // Control messages (direct-path introductions) ride the member's session too.
    this.control.register(index, { txKey: r.txKey, rxKey: r.rxKey, remoteIndex: init.remoteIndex, vr: -1 });
    const directKey = init.payload.direct;
    // Before the replaced session goes: a rejoin with the same key keeps its direct paths.
    if (this.intros && typeof directKey === 'string' && isPublicKey(directKey)) this.members.get(index)!.directKey = directKey;
    if (replaced !== null) this.dropMemberSession(replaced);
    this.engine.sendRaw(host, port, r.message);
    if (adm.shortcut) this.counters.shortcut_joins++;
    else this.counters.joins++;
    // A member from another site's subnet failed over to us: tell every peer to send its
    // traffic here from now on (a host route beats the site's subnet in the GNDT). A
    // shortcut member is not announced: it stays its own FullVR's member for everyone else.
    if (!home && !adm.shortcut) {
      for (const a of adm.answer.addresses) this.announceHost(net.id, a);
    }
    log.info(adm.shortcut ? 'shortcut member joined' : 'member joined', {
      address: adm.answer.address,
      network: net.id,
      endpoint: `${host}:${port}`,
      session: index,
      rejoin: replaced !== null || undefined,
    });
  }

  /**
   * Shortcuts for a member of `net`: every peer with an endpoint that serves sites of the
   * network, with a ticket vouching for the member's addresses. None when shortcuts are off.
   */
  private shortcutOffers(net: FullvrNetworkConfig, addrs: string[]): ShortcutOffer[] {
    if (!this.cfg.shortcuts) return [];
    const offers: ShortcutOffer[] = [];
    for (const p of this.cfg.peers) {
      const routes = net.sites.filter((s) => s.vr === p.id).map((s) => s.subnet);
      if (p.limited || !p.endpoint || !routes.length) continue;
      const ticket = this.shortcuts.issue(p.id, net.id, addrs);
      if (ticket) offers.push({ vr: p.id, endpoint: p.endpoint, publicKey: p.publicKey, routes, ticket });
    }
    return offers;
  }

  private announceHost(network: number, address: string): void {
    for (const p of this.peers.currentSessions()) this.control.send(this.engine, p.session, { op: 'host', network, address, vr: this.cfg.id });
  }

  private onPeerControl(vr: number, p: Record<string, unknown>): void {
    if (p.op !== 'host' || typeof p.address !== 'string' || !Number.isInteger(p.network) || p.vr !== vr) return;
    const net = this.networks.get(p.network as number);
    // Only for networks we route, and only for addresses inside one of its sites.
    if (!net || !net.sites.some((s) => safeContains(s.subnet, p.address as string))) return;
    let m = this.hostRoutes.get(net.id);
    if (!m) this.hostRoutes.set(net.id, (m = new Map()));
    m.set(p.address, vr);
    this.rebuildGndt(net.id);
    this.counters.host_routes++;
    log.info('host route', { network: net.id, address: p.address, vr });
  }

  /** GNDT of a network: its sites, plus host routes for members that failed over elsewhere. */
  private rebuildGndt(id: number): void {
    const n = this.networks.get(id);
    if (!n) return;
    const hosts = [...(this.hostRoutes.get(id) ?? new Map<string, number>())].map(([a, vr]) => ({ subnet: `${a}/${a.includes(':') ? 128 : 32}`, vr }));
    this.tables.setGndt(id, [...n.sites.map((s) => ({ subnet: s.subnet, vr: s.vr })), ...hosts]);
  }

  /** Member `session` is no longer ours: out of the member table, its session gone (see dropMemberSession). */
  private dropMember(session: number, revoke = true): void {
    this.members.forget(session);
    this.dropMemberSession(session, revoke);
  }

  /** revoke: its direct paths end (it left its network, or may have); false: only forgotten here. */
  private dropMemberSession(index: number, revoke = true): void {
    this.control.unregister(index);
    if (revoke) this.intros?.revoke(index);
    else this.intros?.forget(index);
    this.engine.deleteSession(index);
    this.datapath.setSessionKind(index, SessionKind.NONE);
    this.indices.release(index);
  }

  private expireMembers(shortcutsOnly = false): void {
    const now = monotonicMs();
    const memberLimit = Math.max(120_000, 6 * this.cfg.keepaliveSeconds * 1000);
    for (const m of this.members.list()) {
      if (shortcutsOnly && !m.shortcut) continue;
      const limit = m.shortcut ? SHORTCUT_SILENCE_MS + SHORTCUT_KEEPALIVE_MS : memberLimit;
      const info = this.engine.sessionInfo(m.session);
      const last = Math.max(info?.lastRxMs ?? 0, now - (Date.now() - m.joinedAt));
      if (now - last > limit) {
        // A peer's member idle on its shortcut is still a member of its network (its own
        // FullVR holds it): its direct paths stand. Ours gone silent has lapsed.
        this.dropMember(m.session, !m.shortcut);
        this.counters.members_expired++;
        log.info('member expired', { address: m.address, network: m.network, silentMs: now - last });
      }
    }
  }

  /**
   * A member stopping said so (CTRL "bye" on its session): drop it now rather than after its
   * silence, so nothing more is sent into a session that is gone, and its direct paths are
   * revoked at once (its peers stop sending to it instead of noticing its silence).
   */
  private memberLeft(session: number): void {
    const m = this.members.get(session);
    if (!m) return;
    this.dropMember(session);
    this.counters.members_left++;
    log.info('member left', { address: m.address, network: m.network, shortcut: m.shortcut ? true : undefined });
  }

  /** Tell a sender (rate-limited, unauthenticated) that we do not know its session, so it re-handshakes. */
  private answerUnknownSession(batch: PacketBatch, i: number): void {
    if (this.errorBudget <= 0) return;
    this.errorBudget--;
    // A dropped datagram's OFF points at its header (in a later slot's region after a direct GRO receive).
    const hdr = i * SLOT_SIZE + batch.meta[i * META_FIELDS + M.OFF];
    const receiverIndex = batch.buf.readUInt32BE(hdr + 4);
    const { host, port } = batch.addrString(i);
    this.engine.sendRaw(host, port, encodeError(1, receiverIndex, this.cfg.id));
    this.counters.errors_sent++;
  }

  /**
   * Apply routing tables from the authority (already signature- and version-checked):
   * networks (GNDT), peers (NSKT) and member placement, all validated like a config file
   * first, so a bad table changes nothing.
   */
  applyTables(t: TablesBody): void {
    const started = performance.now();
    const { privateKeyFile: _f, ...base } = this.cfg as FullvrConfig & { privateKeyFile?: string };
    const next = parseFullvrConfig({ ...base, networks: t.networks.map((n) => ({ lan: [], ...n })), peers: t.peers }, `tables v${t.version}`);
    const newIds = new Set(next.networks.map((n) => n.id));
    const members = this.members;
    const routesBefore = new Map([...this.networks.keys()].map((id) => [id, this.routesFor(id)]));
    members.assigned = new Map(t.members.map((m) => [m.address, m.network]));
    members.left = new Set((t.left ?? []).map((l) => memberKey(l.network, l.address)));
    for (const m of members.list()) {
      const want = members.assigned.get(m.address);
      if (members.left.has(memberKey(m.network, m.address)) || (!newIds.has(m.network) && (want === undefined || !newIds.has(want)))) {
        // Removed by an operator, or its network is gone: drop it now; its rejoin is refused.
        this.dropMember(m.session);
        log.info('member removed by authority', { address: m.address, network: m.network });
        continue;
      }
      if (want !== undefined && want !== m.network && newIds.has(want)) {
        const oldRoutes = this.routesFor(m.network);
        const from = m.network; // relabel changes the record
        members.relabel(m.session, want);
        this.datapath.setSessionNetwork(m.session, want);
        this.intros?.revoke(m.session); // its direct paths were within the old network
        log.info('member moved by authority', { address: m.address, from, to: want });
        // Different routes for the new network: make the TinyVR rejoin (with its ticket) to learn them.
        if (oldRoutes !== this.routesFor(want, next.networks)) this.askToRejoin(m.session, m.endpoint);
        continue;
      }
      // Same network, but its sites changed (merge/split, site added): the member needs new routes.
      if (routesBefore.has(m.network) && routesBefore.get(m.network) !== this.routesFor(m.network, next.networks)) {
        this.askToRejoin(m.session, m.endpoint);
      }
    }
    for (const id of this.tables.networks()) if (!newIds.has(id)) this.tables.removeNetwork(id);
    this.networks.clear();
    for (const n of next.networks) this.networks.set(n.id, n);
    for (const n of next.networks) this.rebuildGndt(n.id);
    this.peerMode = strongestMode(next.networks.map((n) => authModeOf(n.auth)));
    this.peers.setPeers(
      next.peers.map((p) => {
        const ep = p.endpoint ? parseEndpoint(p.endpoint) : { host: '', port: 0 };
        return { id: p.id, host: ep.host, port: ep.port, publicKey: loadPublicKey(p.publicKey), publicKeyB64: p.publicKey, limited: p.limited };
      }),
      this.peerMode,
    );
    this.datapath.relayFor.clear();
    for (const id of this.peers.limitedPeers()) this.datapath.relayFor.add(id);
    for (const jti of t.revokedTokens) this.tokens.revoke?.(jti);
    this.tokens.setServedNetworks?.(newIds);
    this.cfg = { ...this.cfg, networks: next.networks, peers: next.peers };
    this.tablesVersion = t.version;
    this.tablesAppliedAt = new Date().toISOString();
    this.counters.tables_applied++;
    log.info('tables applied', { version: t.version, networks: [...newIds].join(',') || 'none', peers: next.peers.length, ms: (performance.now() - started).toFixed(1) });
  }

  /** A comparable description of the routes a member of `network` gets. */
  private routesFor(network: number, nets = [...this.networks.values()]): string {
    const n = nets.find((x) => x.id === network);
    if (!n) return '';
    return n.mode === 'virtual' ? String(n.overlay) : n.sites.filter((s) => s.vr !== this.cfg.id).map((s) => s.subnet).sort().join(',');
  }

  /** Drop a member's session and tell it so (ERROR unknown session): it rejoins at once. */
  private askToRejoin(session: number, endpoint: string): void {
    const ep = parseEndpoint(endpoint);
    this.engine.deleteSession(session);
    this.control.unregister(session);
    this.datapath.setSessionKind(session, SessionKind.NONE);
    this.engine.sendRaw(ep.host, ep.port, encodeError(1, session, this.cfg.id));
  }

  /** Health and load as reported to the authority. */
  heartbeat(): HeartbeatBody {
    const peers = this.peers?.metrics() ?? [];
    // Shortcut members stay their own FullVR's members: not reported here, but they are load.
    const own = this.members.list().filter((m) => !m.shortcut);
    return {
      members: own.length,
      load: this.members.size,
      peersUp: peers.filter((p) => p.up).length,
      peers,
      memberList: own.map((m) => ({ network: m.network, address: m.address })),
    };
  }

  status(): Record<string, unknown> {
    // Packets the engine forwarded from its verdict cache count as routed/relayed too.
    const engine: Record<string, number> = this.engine?.stats() ?? {};
    return {
      role: 'fullvr',
      id: this.cfg.id,
      listen: this.cfg.listen,
      publicKey: this.publicKey,
      mtu: this.mtu,
      counters: {
        ...this.counters,
        routed: this.datapath.routed + (engine.cache_routed ?? 0),
        relayed: this.datapath.relayed + (engine.cache_relayed ?? 0),
        direct_intros: this.intros?.intros ?? 0,
        direct_revocations: this.intros?.revocations ?? 0,
      },
      tables: { version: this.tablesVersion, appliedAt: this.tablesAppliedAt },
      joinRefusals: this.refusals,
      engine,
      drops: this.datapath.dropCounters(),
      members: this.members.list().map((m) => ({ ...m })),
      peers: this.peers.status(),
      routing: this.tables.describe(),
    };
  }
}

function isPublicKey(b64: string): boolean {
  try {
    loadPublicKey(b64);
    return true;
  } catch {
    return false;
  }
}

function safeContains(cidr: string, ip: string): boolean {
  try {
    return cidrContains(cidr, ip);
  } catch {
    return false;
  }
}
