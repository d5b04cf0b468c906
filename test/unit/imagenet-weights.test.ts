/**
 * npm run train:weights (training/pretrained/extract_nsfwjs.js --ensure): it keeps weights that were
 * extracted from the pinned nsfwjs tarball, redoes ones that are not, and refuses a tarball whose
 * sha256 is not the pinned one. No network: every case here has its tarball or its weights on disk.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SCRIPT = path.resolve(__dirname, '..', '..', 'training', 'pretrained', 'extract_nsfwjs.js');
const { extracted } = require(SCRIPT) as { extracted: (out: string) => boolean };
const PINNED = /const PACKAGE_SHA256 = '([0-9a-f]{64})'/.exec(fs.readFileSync(SCRIPT, 'utf8'))![1];

function ensure(tgz: string, out: string): string {
  return execFileSync(process.execPath, [SCRIPT, '--ensure', tgz, out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('ImageNet weights for training (extract_nsfwjs.js --ensure)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-imagenet-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function writeWeights(sha: string, binBytes: number): string {
    const out = path.join(dir, 'w');
    fs.writeFileSync(out + '.json', JSON.stringify({ sha256: sha, tensors: [{ name: 'a', shape: [2, 3], offset: 0 }, { name: 'b', shape: [4], offset: 24 }] }));
    fs.writeFileSync(out + '.bin', Buffer.alloc(binBytes));
    return out;
  }

  test('weights from the pinned tarball, complete, are kept as they are', () => {
    const out = writeWeights(PINNED, 40);
    expect(extracted(out)).toBe(true);
    expect(ensure(path.join(dir, 'absent.tgz'), out)).toMatch(/already in .*w\.bin/);
  });

  test('a truncated .bin, or weights from another tarball, are not taken for extracted ones', () => {
    expect(extracted(writeWeights(PINNED, 36))).toBe(false);
    expect(extracted(writeWeights('0'.repeat(64), 40))).toBe(false);
    expect(extracted(path.join(dir, 'nothing'))).toBe(false);
  });

  test('a tarball that is not the pinned nsfwjs 4.4.0 is refused with both hashes named, and no weights are written', () => {
    const tgz = path.join(dir, 'nsfwjs-4.4.0.tgz');
    fs.writeFileSync(tgz, 'not the package');
    const out = path.join(dir, 'fresh');
    let message = '';
    try {
      ensure(tgz, out);
    } catch (e) {
      message = String((e as { stderr?: string }).stderr);
    }
    expect(message).toContain(`sha256 ${crypto.createHash('sha256').update('not the package').digest('hex')}, expected ${PINNED}`);
    expect(fs.existsSync(out + '.bin')).toBe(false);
  });
});
