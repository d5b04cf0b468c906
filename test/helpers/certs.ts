/**
 * Throwaway certificates for DICOM TLS tests, made with the openssl command line at test time
 * (no private key is ever committed): a CA, leaf certificates it signs (server + client use, SAN
 * localhost / 127.0.0.1 so Node's hostname check passes), and self-signed strangers. The same
 * commands are in the README section "DICOM TLS: generating certificates".
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface CertFiles {
  cert: string;
  key: string;
}

export interface TestCa extends CertFiles {
  dir: string;
  /** a leaf certificate signed by this CA, with the given subject CN */
  issue(name: string, cn?: string): CertFiles;
  /** revokes these certificates and returns the path of the CA's new PEM CRL */
  revoke(...certs: CertFiles[]): string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const LEAF_EXTENSIONS = [
  'basicConstraints=CA:FALSE',
  'keyUsage=critical,digitalSignature,keyEncipherment',
  'extendedKeyUsage=serverAuth,clientAuth',
  'subjectAltName=DNS:localhost,IP:127.0.0.1',
].join('\n');

/** A new CA in dir (ca.pem, ca.key). */
export function makeCa(dir: string, name = 'ca', cn = 'Sonogate Test CA'): TestCa {
  fs.mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  openssl(
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  const ext = path.join(dir, 'leaf.ext');
  fs.writeFileSync(ext, LEAF_EXTENSIONS);
  return {
    dir,
    cert,
    key,
    issue(leaf: string, leafCn = leaf) {
      const leafKey = path.join(dir, `${leaf}.key`);
      const csr = path.join(dir, `${leaf}.csr`);
      const leafCert = path.join(dir, `${leaf}.pem`);
      openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', leafKey, '-out', csr, '-subj', `/CN=${leafCn}`], dir);
      openssl(['x509', '-req', '-in', csr, '-CA', cert, '-CAkey', key, '-CAcreateserial', '-out', leafCert, '-days', '2', '-extfile', ext], dir);
      return { cert: leafCert, key: leafKey };
    },
    revoke(...certs: CertFiles[]) {
      // openssl ca keeps its state in an index file; a minimal configuration for it
      const cnf = path.join(dir, 'ca.cnf');
      if (!fs.existsSync(cnf)) {
        fs.writeFileSync(cnf, '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n');
        fs.writeFileSync(path.join(dir, 'index.txt'), '');
        fs.writeFileSync(path.join(dir, 'crlnumber'), '01\n');
      }
      for (const c of certs) openssl(['ca', '-config', cnf, '-keyfile', key, '-cert', cert, '-revoke', c.cert], dir);
      const crl = path.join(dir, 'crl.pem');
      openssl(['ca', '-config', cnf, '-keyfile', key, '-cert', cert, '-gencrl', '-out', crl], dir);
      return crl;
    },
  };
}

/** A self-signed certificate that no CA of ours vouches for (a stranger, or a rogue PACS). */
export function makeSelfSigned(dir: string, name: string, cn = name): CertFiles {
  fs.mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], dir);
  return { cert, key };
}

/** DCMTK client/server TLS arguments: our key and certificate, and the CA to verify the peer. */
export function dcmtkTlsArgs(own: CertFiles, caFile: string): string[] {
  // -pw: the keys are unencrypted, never prompt for a password on stdin
  return ['+tls', own.key, own.cert, '-pw', '+cf', caFile];
}
