/**
 * Reads and checks the PEM files named by `dicom.tls` and `destinations[].tls` at start, so a
 * missing, unreadable or mismatched file stops `sonogate serve` with exit 2 and a message naming
 * the key (e.g. `dicom.tls.cert: cannot read /etc/sonogate/server.pem: ENOENT`) instead of
 * surfacing later as a vague handshake failure on the first association.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { ConfigError } from './load';
import type { Config, TlsFilesConfig } from './schema';

/** The PEM contents of one tls block, ready for tls.createServer / tls.connect. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  /** subject CN of our own certificate (logged at start) */
  subjectCN: string | null;
  /** dicom.tls.crl's contents (the listener only) */
  crl?: Buffer;
  /** the certificate's validity end (ISO), logged so an expiry is seen coming */
  validTo: string;
  /** problems that do not stop the start (an expired certificate: the peer decides) */
  warnings: string[];
}

export interface LoadedTls {
  /** dicom.tls, or null when not configured */
  listener: TlsMaterial | null;
  /** by destination name, only destinations with a tls block */
  destinations: Map<string, TlsMaterial>;
}

function readPem(key: string, file: string): Buffer {
  const abs = path.resolve(file);
  try {
    return fs.readFileSync(abs);
  } catch (e) {
    throw new ConfigError(`${key}: cannot read ${abs}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Every certificate in a PEM bundle (a CA file may hold a chain or several roots). */
function parseCertificates(key: string, file: string, pem: Buffer): crypto.X509Certificate[] {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError(`${key}: ${path.resolve(file)} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return blocks.map((b) => {
    try {
      return new crypto.X509Certificate(b);
    } catch (e) {
      throw new ConfigError(`${key}: ${path.resolve(file)} holds a certificate that cannot be parsed: ${(e as Error).message}`);
    }
  });
}

function subjectCN(cert: crypto.X509Certificate): string | null {
  const m = /^CN=(.*)$/m.exec(cert.subject);
  return m ? m[1] : null;
}

/**
 * Loads one tls block; `prefix` is its key path ("dicom.tls", "destinations.0.tls"), and `keyOf`
 * names one of its files in messages (a command line names them --tls-cert and so on).
 */
export function loadTlsFiles(prefix: string, files: TlsFilesConfig, now = new Date(), keyOf = (file: 'cert' | 'key' | 'ca') => `${prefix}.${file}`): TlsMaterial {
  const cert = readPem(keyOf('cert'), files.cert);
  const key = readPem(keyOf('key'), files.key);
  const ca = readPem(keyOf('ca'), files.ca);
  const [leaf] = parseCertificates(keyOf('cert'), files.cert, cert);
  parseCertificates(keyOf('ca'), files.ca, ca);
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch (e) {
    const msg = (e as Error).message;
    // OpenSSL 1 asks for a passphrase; OpenSSL 3 reports the prompt it could not show as "interrupted or cancelled"
    const encrypted = /passphrase|interrupted or cancelled|bad decrypt/i.test(msg) || /ENCRYPTED/.test(key.toString());
    const why = encrypted ? 'an encrypted private key is not supported (store it unencrypted, readable by Sonogate only)' : `not a PEM private key (${msg})`;
    throw new ConfigError(`${keyOf('key')}: ${path.resolve(files.key)}: ${why}`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new ConfigError(`${keyOf('key')}: ${path.resolve(files.key)} does not belong to the certificate in ${keyOf('cert')} (${path.resolve(files.cert)})`);
  }
  try {
    // whatever else OpenSSL objects to (a key too weak for its security level, say)
    tls.createSecureContext({ cert, key, ca });
  } catch (e) {
    throw new ConfigError(`${prefix}: the certificate, key and CA cannot be used for TLS: ${(e as Error).message}`);
  }
  const warnings: string[] = [];
  if (new Date(leaf.validTo) < now) warnings.push(`${keyOf('cert')}: the certificate expired on ${new Date(leaf.validTo).toISOString()}; peers will refuse it`);
  if (new Date(leaf.validFrom) > now) warnings.push(`${keyOf('cert')}: the certificate is not valid before ${new Date(leaf.validFrom).toISOString()}`);
  // the key is the gateway's identity: anyone who can read it can pose as Sonogate
  const mode = fs.statSync(files.key).mode & 0o777;
  if (mode & 0o077) warnings.push(`${keyOf('key')}: ${path.resolve(files.key)} is readable by others than its owner (mode ${mode.toString(8)}); chmod 600 it`);
  return { cert, key, ca, subjectCN: subjectCN(leaf), validTo: new Date(leaf.validTo).toISOString(), warnings };
}

/** dicom.tls.crl: PEM CRLs, checked to be usable (a CRL not signed by the CA is caught at the first handshake, by OpenSSL). */
function loadCrl(file: string, material: TlsMaterial): Buffer {
  const crl = readPem('dicom.tls.crl', file);
  if (!/-----BEGIN X509 CRL-----/.test(crl.toString('latin1'))) throw new ConfigError(`dicom.tls.crl: ${path.resolve(file)} holds no PEM CRL (-----BEGIN X509 CRL-----)`);
  try {
    tls.createSecureContext({ cert: material.cert, key: material.key, ca: material.ca, crl });
  } catch (e) {
    throw new ConfigError(`dicom.tls.crl: ${path.resolve(file)} cannot be used: ${(e as Error).message}`);
  }
  return crl;
}

/** Every tls block of the configuration; throws ConfigError naming the first bad key. */
export function loadTlsConfig(config: Config): LoadedTls {
  const listener = config.dicom.tls ? loadTlsFiles('dicom.tls', config.dicom.tls) : null;
  if (listener && config.dicom.tls?.crl) listener.crl = loadCrl(config.dicom.tls.crl, listener);
  const destinations = new Map<string, TlsMaterial>();
  config.destinations.forEach((d, i) => {
    if (d.tls) destinations.set(d.name, loadTlsFiles(`destinations.${i}.tls`, d.tls));
  });
  return { listener, destinations };
}
