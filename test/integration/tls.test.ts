/**
 * DICOM TLS against real DCMTK peers on loopback (issue 4 "Security at the door"): storescu +tls
 * as the scanner, storescp +tls as the PACS, certificates from a throwaway CA made with openssl in
 * a temp folder. Checks who gets in (a CA-signed client), who does not (self-signed, no
 * certificate, plain TCP on the TLS port, unknown AE, pinned CN), that plain: false really closes
 * the plain port, and that results reach a TLS PACS only when its certificate verifies.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { ConfigError } from '../../src/config/load';
import { loadTlsFiles } from '../../src/config/tlsFiles';
import { DicomStoreDestination } from '../../src/dispatch/dicomStore';
import { Gateway, startGateway } from '../../src/gateway';
import { Logger, createLogger } from '../../src/log';
import { CertFiles, TestCa, dcmtkTlsArgs, makeCa, makeSelfSigned } from '../helpers/certs';
import { copyProcessor, copyUid, silentLogger, tempDir, testConfig, writeTemp } from '../helpers/gatewayHarness';
import { LOOPBACK, StoreScpPeer, echoscu, eventually, freePort, runTool, startStoreScp, storescu } from '../helpers/peers';
import { phantomFile } from '../helpers/phantom';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');
const haveTools = spawnSync('storescu', ['--version']).status === 0 && spawnSync('openssl', ['version']).status === 0;
const d = haveTools ? describe : describe.skip;

d('DICOM TLS', () => {
  let certs: string;
  let ca: TestCa;
  let sonogate: CertFiles;
  let scanner: CertFiles;
  let otherDevice: CertFiles;
  let rogue: CertFiles;
  let rogueCa: TestCa;
  let dir: string;
  const gateways: Gateway[] = [];
  const peers: StoreScpPeer[] = [];

  beforeAll(() => {
    certs = tempDir('tls-certs');
    ca = makeCa(path.join(certs, 'ca'));
    sonogate = ca.issue('sonogate', 'SONOGATE');
    scanner = ca.issue('scanner', 'US_SCANNER');
    otherDevice = ca.issue('other-device', 'OTHER_DEVICE');
    rogue = makeSelfSigned(path.join(certs, 'rogue'), 'rogue', 'US_SCANNER');
    rogueCa = makeCa(path.join(certs, 'rogue-ca'), 'ca', 'Somebody Else CA');
  });
  afterAll(() => fs.rmSync(certs, { recursive: true, force: true }));

  // the gateway's warnings, to check why a connection was refused
  let logLines: string[];
  let logger: Logger;
  beforeEach(() => {
    dir = tempDir('tls');
    logLines = [];
    logger = createLogger('warn', { write: (line: string) => void logLines.push(line) });
  });
  const logged = () => logLines.join('');
  afterEach(async () => {
    for (const g of gateways.splice(0)) await g.close();
    for (const p of peers.splice(0)) await p.stop();
  });

  async function start(over: { tls?: Record<string, unknown>; dicom?: Record<string, unknown>; [k: string]: unknown } = {}): Promise<Gateway> {
    const { tls: tlsOver, dicom, ...rest } = over;
    const config = testConfig({
      dataDir: path.join(dir, 'data'),
      port: await freePort(),
      study: { quietSeconds: 0.5 },
      dicom: { tls: { port: await freePort(), cert: sonogate.cert, key: sonogate.key, ca: ca.cert, requireClientCert: true, ...tlsOver }, ...dicom },
      ...rest,
    });
    const g = await startGateway(config, copyProcessor(), logger);
    gateways.push(g);
    return g;
  }

  const image = (seed: number) => writeTemp(dir, `us-${seed}.dcm`, phantomFile({ seed }));
  const tlsArgs = (own: CertFiles) => dcmtkTlsArgs(own, ca.cert);

  test('a scanner with a certificate signed by our CA stores over TLS; the plain port stays open beside it', async () => {
    const g = await start();
    expect(g.dicomTlsPort).not.toBeNull();
    expect(g.dicomTlsPort).not.toBe(g.dicomPort);
    const r = await storescu([image(31)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) });
    expect(r.output).toMatch(/Received Store Response \(Success\)/);
    expect(r.code).toBe(0);
    expect(g.store.getInstance('2.25.100031.1.31')).toMatchObject({ callingAe: 'US_SCANNER', status: 'received' });
    expect((await echoscu({ port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
    // plain: true (the default) keeps the plain port
    expect((await echoscu({ port: g.dicomPort })).code).toBe(0);
  });

  test('a self-signed client certificate, or none, fails the handshake and nothing is stored', async () => {
    const g = await start();
    const selfSigned = await storescu([image(32)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(rogue) });
    expect(selfSigned.code).not.toBe(0);
    expect(selfSigned.output).not.toMatch(/Received Store Response/);
    // anonymous TLS: verifies us, offers no certificate of its own
    const anonymous = await storescu([image(32)], { port: g.dicomTlsPort!, extraArgs: ['+tla', '+cf', ca.cert] });
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.output).not.toMatch(/Received Store Response/);
    expect(g.store.listStudies()).toHaveLength(0);
    await eventually(() => /DEPTH_ZERO_SELF_SIGNED_CERT/.test(logged()) && /no client certificate/.test(logged()), 2000, 'refusals logged');
    expect(logged()).toMatch(/DICOM TLS client refused: certificate not trusted/);
    // on /metrics: two TLS refusals (after the handshake under TLS 1.3, in it under 1.2), no association
    const { rejected, accepted } = g.associations().inbound;
    expect([rejected.tls_certificate + rejected.tls_handshake, accepted]).toEqual([2, 0]);
    // the listener is still healthy for a good client
    expect((await echoscu({ port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
  });

  test('requireClientCert false: a client may come without a certificate, but a presented one must still verify', async () => {
    const g = await start({ tls: { requireClientCert: false } });
    expect((await echoscu({ port: g.dicomTlsPort!, extraArgs: ['+tla', '+cf', ca.cert] })).code).toBe(0);
    expect((await echoscu({ port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
    expect((await echoscu({ port: g.dicomTlsPort!, extraArgs: tlsArgs(rogue) })).code).not.toBe(0);
  });

  test('plain DICOM on the TLS port is refused', async () => {
    const g = await start();
    const r = await storescu([image(33)], { port: g.dicomTlsPort! });
    expect(r.code).not.toBe(0);
    expect(r.output).not.toMatch(/Received Store Response/);
    expect(g.store.listStudies()).toHaveLength(0);
    await eventually(() => /DICOM TLS handshake failed/.test(logged()), 2000, 'handshake failure logged');
    expect(g.associations().inbound.rejected).toMatchObject({ tls_handshake: 1, tls_certificate: 0 });
  });

  test('the AE allow-list and the called-AE check apply on TLS too (reasons 3 and 7)', async () => {
    const g = await start({ dicom: { allowedCallers: [{ aeTitle: 'US_SCANNER' }] } });
    const stranger = await storescu([image(34)], { port: g.dicomTlsPort!, callingAe: 'STRANGER', extraArgs: tlsArgs(scanner) });
    expect(stranger.code).not.toBe(0);
    expect(stranger.output).toMatch(/Association Rejected/);
    expect(stranger.output).toMatch(/Calling AE Title Not Recognized/i);
    const wrongCalled = await echoscu({ port: g.dicomTlsPort!, calledAe: 'NOT_US', extraArgs: tlsArgs(scanner) });
    expect(wrongCalled.output).toMatch(/Called AE Title Not Recognized/i);
    expect(g.store.listStudies()).toHaveLength(0);
    expect((await storescu([image(34)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
  });

  test('dicom.tls.crl: a revoked client certificate is refused at the handshake; the others still get in', async () => {
    const revoked = ca.issue('revoked-scanner', 'US_SCANNER');
    const crl = ca.revoke(revoked);
    const g = await start({ tls: { crl } });
    const r = await storescu([image(37)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(revoked) });
    expect(r.code).not.toBe(0);
    expect(g.store.listStudies()).toHaveLength(0);
    await eventually(() => /CERT_REVOKED|certificate revoked/i.test(logged()), 2000, 'revocation logged');
    expect((await storescu([image(38)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
    // a file that is not a CRL names the key
    const err = await start({ tls: { crl: ca.cert } }).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^dicom\.tls\.crl: .* holds no PEM CRL/);
  });

  test('an allowedCallers entry can pin the client certificate CN; it never matches plain TCP', async () => {
    const g = await start({ dicom: { allowedCallers: [{ aeTitle: 'US_SCANNER', certificateCN: 'US_SCANNER' }] } });
    expect((await echoscu({ port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
    // a certificate from our CA, but issued to another device
    const other = await echoscu({ port: g.dicomTlsPort!, extraArgs: tlsArgs(otherDevice) });
    expect(other.output).toMatch(/Calling AE Title Not Recognized/i);
    const plain = await echoscu({ port: g.dicomPort });
    expect(plain.output).toMatch(/Calling AE Title Not Recognized/i);
  });

  test('two devices with one AE title, told apart by certificate CN: each one\'s results go to its own entry\'s destinations', async () => {
    const siteA = await startStoreScp({ dir: path.join(dir, 'site-a'), aeTitle: 'SITE_A' });
    const siteB = await startStoreScp({ dir: path.join(dir, 'site-b'), aeTitle: 'SITE_B' });
    peers.push(siteA, siteB);
    const g = await start({
      destinations: [
        { name: 'siteA', aeTitle: 'SITE_A', host: LOOPBACK, port: siteA.port },
        { name: 'siteB', aeTitle: 'SITE_B', host: LOOPBACK, port: siteB.port },
      ],
      dicom: {
        allowedCallers: [
          { aeTitle: 'US_SCANNER', certificateCN: 'US_SCANNER', destinations: ['siteA'] },
          { aeTitle: 'US_SCANNER', certificateCN: 'OTHER_DEVICE', destinations: ['siteB'] },
        ],
      },
    });
    expect((await storescu([image(35)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(otherDevice) })).code).toBe(0);
    const atB = await siteB.waitForFiles(1, 20_000);
    expect(atB).toHaveLength(1);
    expect(await siteA.received()).toHaveLength(0);
    expect((await storescu([image(36)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
    await siteA.waitForFiles(1, 20_000);
    await new Promise((r) => setTimeout(r, 1000)); // nothing more arrives at B
    expect(await siteB.received()).toHaveLength(1);
  });

  test('plain: false closes the plain port; TLS is the only way in', async () => {
    const plainPort = await freePort();
    const g = await start({ port: plainPort, tls: { plain: false } });
    expect(g.dicomPort).toBe(g.dicomTlsPort);
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect({ host: LOOPBACK, port: plainPort }, () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    expect((await storescu([image(35)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
  });

  test('minVersion is enforced: a TLS 1.2 client cannot reach a TLSv1.3-only listener', async () => {
    const g = await start({ tls: { minVersion: 'TLSv1.3' } });
    const handshake = (maxVersion: tls.SecureVersion) =>
      new Promise<string>((resolve) => {
        const s = tls.connect({
          host: LOOPBACK, port: g.dicomTlsPort!, maxVersion, ca: fs.readFileSync(ca.cert),
          cert: fs.readFileSync(scanner.cert), key: fs.readFileSync(scanner.key), servername: 'localhost',
        });
        s.on('secureConnect', () => {
          resolve(`ok ${s.getProtocol()}`);
          s.destroy();
        });
        s.on('error', (e) => resolve(`error ${e.message}`));
      });
    expect(await handshake('TLSv1.2')).toMatch(/^error/);
    expect(await handshake('TLSv1.3')).toBe('ok TLSv1.3');
  });

  test('a connection that never finishes its handshake is closed at the association timeout; handshakes count against maxAssociations', async () => {
    const g = await start({ dicom: { associationTimeoutSeconds: 1, maxAssociations: 3 } });
    const closedAt = [0, 0, 0, 0, 0];
    const t0 = Date.now();
    // the close listener goes on at once: a connection dropped over the limit may close before
    // the others have even connected
    const sockets = closedAt.map((_, i) => {
      const s = net.connect(g.dicomTlsPort!, LOOPBACK); // and then says nothing
      s.on('error', () => undefined);
      s.on('close', () => (closedAt[i] = Date.now() - t0));
      return s;
    });
    try {
      // two over the limit are dropped at once; the other three at the timeout, by the gateway
      await eventually(() => closedAt.filter((t) => t > 0).length >= 2, 2000, 'connections over maxAssociations dropped');
      await eventually(() => closedAt.every((t) => t > 0), 5000, 'unfinished handshakes closed');
      expect(closedAt.filter((t) => t >= 800)).toHaveLength(3);
    } finally {
      sockets.forEach((s) => s.destroy());
    }
    // a scanner gets in again afterwards
    expect((await storescu([image(34)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
  });

  test('TLS 1.2 cipher suites without forward secrecy or authenticated encryption are refused, in and out', async () => {
    const g = await start();
    const handshake = (ciphers: string) =>
      new Promise<string>((resolve) => {
        const s = tls.connect({
          host: LOOPBACK, port: g.dicomTlsPort!, maxVersion: 'TLSv1.2', ciphers, ca: fs.readFileSync(ca.cert),
          cert: fs.readFileSync(scanner.cert), key: fs.readFileSync(scanner.key), servername: 'localhost',
        });
        s.on('secureConnect', () => {
          resolve(`ok ${s.getCipher().name}`);
          s.destroy();
        });
        s.on('error', (e) => resolve(`error ${e.message}`));
      });
    for (const weak of ['AES128-SHA', 'AES256-GCM-SHA384', 'ECDHE-RSA-AES128-SHA']) expect(await handshake(weak)).toMatch(/^error/);
    expect(await handshake('ECDHE-RSA-AES128-GCM-SHA256')).toBe('ok ECDHE-RSA-AES128-GCM-SHA256');

    // out: a "PACS" that offers only a static-RSA CBC suite never sees a finished handshake
    const pacsCert = ca.issue('weak-pacs', 'PACS');
    let handshakes = 0;
    const weakPacs = tls.createServer({ cert: fs.readFileSync(pacsCert.cert), key: fs.readFileSync(pacsCert.key), maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' }, (s) => {
      handshakes++;
      s.destroy();
    });
    weakPacs.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => weakPacs.listen(0, LOOPBACK, () => r()));
    try {
      const port = (weakPacs.address() as net.AddressInfo).port;
      const dest = new DicomStoreDestination({ name: 'weak', aeTitle: 'PACS', host: LOOPBACK, port, tls: loadTlsFiles('t', { cert: sonogate.cert, key: sonogate.key, ca: ca.cert }, new Date(), (f) => f) }, 'SONOGATE', 3000);
      expect((await dest.echo()).ok).toBe(false);
      expect(handshakes).toBe(0);
    } finally {
      await new Promise<void>((r) => weakPacs.close(() => r()));
    }
  });

  describe('results to a PACS over TLS', () => {
    async function tlsPacs(own: CertFiles, trust: string): Promise<StoreScpPeer> {
      // --require-peer-cert: the PACS insists on a client certificate it can verify
      const p = await startStoreScp({ dir: path.join(dir, `pacs-${peers.length}`), extraArgs: ['+tls', own.key, own.cert, '-pw', '+cf', trust, '--require-peer-cert'] });
      peers.push(p);
      return p;
    }

    async function gatewayTo(p: StoreScpPeer): Promise<Gateway> {
      const config = testConfig({
        dataDir: path.join(dir, 'data'),
        port: await freePort(),
        destinations: [{ name: 'pacs', aeTitle: p.aeTitle, host: LOOPBACK, port: p.port, tls: { cert: sonogate.cert, key: sonogate.key, ca: ca.cert } }],
      });
      const g = await startGateway(config, copyProcessor(), silentLogger());
      gateways.push(g);
      return g;
    }

    test('results arrive at a PACS whose certificate our CA signed, and it verifies ours', async () => {
      const p = await tlsPacs(ca.issue('pacs', 'PACS'), ca.cert);
      const g = await gatewayTo(p);
      expect(await g.destination('pacs')!.echo()).toMatchObject({ ok: true });
      expect((await storescu([image(36)], { port: g.dicomPort })).code).toBe(0);
      const received = await p.waitForFiles(1);
      expect(received[0].sopInstanceUid).toBe(copyUid('2.25.100036.1.36'));
      await eventually(() => g.store.listSends({ studyUid: '2.25.100036' }).every((s) => s.status === 'sent'), 5000, 'send marked sent');
    });

    test('a PACS with a certificate our CA did not sign gets nothing: the send fails, is retried, and says why', async () => {
      const p = await tlsPacs(rogueCa.issue('pacs', 'PACS'), ca.cert);
      const g = await gatewayTo(p);
      const echo = await g.destination('pacs')!.echo();
      expect(echo.ok).toBe(false);
      expect(echo.error).toMatch(/send\.network_error/);
      expect((await storescu([image(37)], { port: g.dicomPort })).code).toBe(0);
      const row = await eventually(() => g.store.listSends({ studyUid: '2.25.100037' }).find((s) => s.attempts >= 2), 15_000, 'two attempts');
      expect(row.status).not.toBe('sent');
      expect(row.lastError).toMatch(/send\.network_error: .*(certificate|verify)/i);
      expect(await p.received()).toHaveLength(0);
    });
  });

  (fs.existsSync(CLI) ? test : test.skip)('sonogate send --tls-*: stores to a TLS PACS it can verify, refuses one it cannot', async () => {
    const pacs = await startStoreScp({ dir: path.join(dir, 'pacs-cli'), extraArgs: [...tlsArgs(ca.issue('pacs-cli', 'PACS')), '--require-peer-cert'] });
    peers.push(pacs);
    const file = image(40);
    const tlsOpts = ['--tls-cert', sonogate.cert, '--tls-key', sonogate.key, '--tls-ca', ca.cert];
    const ok = await runTool(process.execPath, [CLI, 'send', file, '--to', `PACS@${LOOPBACK}:${pacs.port}`, ...tlsOpts]);
    expect(ok.stdout).toMatch(/^sent .*status 0x0000/m);
    // one line per file and nothing else (no association dumps of the DICOM library)
    expect(ok.stdout.trim().split('\n')).toHaveLength(1);
    expect(ok.code).toBe(0);
    expect((await pacs.waitForFiles(1))[0].sopInstanceUid).toBe('2.25.100040.1.40');
    // plain TCP to the same port gets nowhere
    const plain = await runTool(process.execPath, [CLI, 'send', file, '--to', `PACS@${LOOPBACK}:${pacs.port}`, '--timeout', '5']);
    expect(plain.code).toBe(1);

    const rogue = await startStoreScp({ dir: path.join(dir, 'pacs-rogue'), extraArgs: [...tlsArgs(rogueCa.issue('pacs-r', 'PACS')), '--require-peer-cert'] });
    peers.push(rogue);
    const refused = await runTool(process.execPath, [CLI, 'send', file, '--to', `PACS@${LOOPBACK}:${rogue.port}`, ...tlsOpts]);
    expect(refused.stdout).toMatch(/^FAILED .*(certificate|verify)/im);
    expect(refused.code).toBe(1);
    expect(await rogue.received()).toHaveLength(0);

    const partial = await runTool(process.execPath, [CLI, 'send', file, '--to', `PACS@${LOOPBACK}:${pacs.port}`, '--tls-cert', sonogate.cert]);
    expect(partial.code).toBe(2);
    expect(partial.stderr).toMatch(/all three of --tls-cert, --tls-key and --tls-ca/);
    const wrongKey = await runTool(process.execPath, [CLI, 'send', file, '--to', `PACS@${LOOPBACK}:${pacs.port}`, ...tlsOpts.slice(0, 2), '--tls-key', scanner.key, '--tls-ca', ca.cert]);
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr).toMatch(/--tls-key: .*does not belong to the certificate in --tls-cert/);
  });

  describe('return to sender over TLS', () => {
    // the scanner's own C-STORE SCP, on TLS with its certificate, insisting on ours
    async function scannerScp(own: CertFiles): Promise<StoreScpPeer> {
      const p = await startStoreScp({ dir: path.join(dir, `scanner-${peers.length}`), aeTitle: 'US_SCANNER', extraArgs: [...tlsArgs(own), '--require-peer-cert'] });
      peers.push(p);
      return p;
    }
    const callerBack = (port: number) => ({ allowedCallers: [{ aeTitle: 'US_SCANNER', host: LOOPBACK, returnToSender: { port, tls: true } }] });

    test('results go back to the scanner over TLS, each side verifying the other', async () => {
      const back = await scannerScp(scanner);
      const g = await start({ dicom: callerBack(back.port) });
      expect((await storescu([image(38)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
      const received = await back.waitForFiles(1);
      expect(received[0].sopInstanceUid).toBe(copyUid('2.25.100038.1.38'));
      const sends = await eventually(() => {
        const rows = g.store.listSends({ studyUid: '2.25.100038' });
        return rows.length && rows.every((s) => s.status === 'sent') ? rows : null;
      }, 5000, 'send marked sent');
      expect(sends.map((s) => s.destination)).toEqual([`return-tls:US_SCANNER@${LOOPBACK}:${back.port}`]);
    });

    test('a scanner whose certificate our CA did not sign gets nothing back: never a plain-TCP fallback', async () => {
      const back = await scannerScp(rogueCa.issue('scanner-rogue', 'US_SCANNER'));
      const g = await start({ dicom: callerBack(back.port) });
      expect((await storescu([image(39)], { port: g.dicomTlsPort!, extraArgs: tlsArgs(scanner) })).code).toBe(0);
      const row = await eventually(() => g.store.listSends({ studyUid: '2.25.100039' }).find((s) => s.attempts >= 1 && s.lastError), 15_000, 'a failed attempt');
      expect(row.status).not.toBe('sent');
      expect(row.lastError).toMatch(/send\.network_error: .*(certificate|verify)/i);
      expect(await back.received()).toHaveLength(0);
    });
  });

  describe('configuration errors name the key (exit 2 from the CLI)', () => {
    test('a missing certificate file', async () => {
      const missing = path.join(certs, 'nope.pem');
      const err = await start({ tls: { cert: missing } }).catch((e) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).toBe(`dicom.tls.cert: cannot read ${missing}: ENOENT`);
    });

    test('an encrypted private key is named as such (OpenSSL 3 reports it as an interrupted prompt)', async () => {
      const encrypted = path.join(certs, 'sonogate-encrypted.key');
      const r = spawnSync('openssl', ['pkey', '-in', sonogate.key, '-out', encrypted, '-aes256', '-passout', 'pass:secret-pass'], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      const err = await start({ tls: { key: encrypted } }).catch((e) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).toMatch(/^dicom\.tls\.key: .*an encrypted private key is not supported/);
    });

    test('a key that does not belong to the certificate, and a destination CA that is not a certificate', async () => {
      const mismatch = await start({ tls: { key: scanner.key } }).catch((e) => e);
      expect(mismatch.message).toMatch(/^dicom\.tls\.key: .*scanner\.key does not belong to the certificate in dicom\.tls\.cert/);
      const notPem = writeTemp(dir, 'ca.txt', Buffer.from('hello'));
      const config = testConfig({
        dataDir: path.join(dir, 'data'),
        port: await freePort(),
        destinations: [{ name: 'pacs', aeTitle: 'PACS', host: LOOPBACK, port: 104, tls: { cert: sonogate.cert, key: sonogate.key, ca: notPem } }],
      });
      await expect(startGateway(config, copyProcessor(), silentLogger())).rejects.toThrow(/^destinations\.0\.tls\.ca: .*ca\.txt holds no PEM certificate/);
    });

    test('a private key others can read is started with, but warned about; the certificate and its expiry are logged', async () => {
      const loose = path.join(certs, 'sonogate-loose.key');
      fs.copyFileSync(sonogate.key, loose);
      fs.chmodSync(loose, 0o644);
      logger = createLogger('info', { write: (line: string) => void logLines.push(line) });
      await start({ tls: { key: loose } });
      expect(logged()).toMatch(/dicom\.tls\.key: .*sonogate-loose\.key is readable by others than its owner \(mode 644\); chmod 600 it/);
      const cert = logLines.map((l) => JSON.parse(l)).find((l) => l.msg === 'DICOM TLS certificate');
      expect(cert).toMatchObject({ key: 'dicom.tls', subjectCN: 'SONOGATE', validTo: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
      fs.chmodSync(loose, 0o600);
      logLines.length = 0;
      await start({ tls: { key: loose } });
      expect(logged()).not.toMatch(/readable by others/);
    });

    (fs.existsSync(CLI) ? test : test.skip)('sonogate serve exits 2 with the key in the message', async () => {
      const configFile = path.join(dir, 'config.json');
      const missing = path.join(certs, 'missing.key');
      fs.writeFileSync(
        configFile,
        JSON.stringify({
          dicom: { host: '127.0.0.1', port: await freePort(), tls: { port: await freePort(), cert: sonogate.cert, key: missing, ca: ca.cert } },
          http: { host: '127.0.0.1', port: 0 },
          dataDir: path.join(dir, 'data'),
          log: { level: 'silent' },
        }),
      );
      const r = await runTool(process.execPath, [CLI, 'serve', '--config', configFile], 30_000);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`dicom.tls.key: cannot read ${missing}: ENOENT`);
    });
  });
});
