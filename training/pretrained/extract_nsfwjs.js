#!/usr/bin/env node
// Pulls the ImageNet MobileNetV2 backbone out of the nsfwjs npm package (MIT, Infinite Red), so
// training/model.py can start an encoder from weights learnt on 1.3 M natural images instead of
// from random ones. nsfwjs 4.4.0 bundles a Keras MobileNetV2 (alpha 1.0, 224 x 224) whose backbone
// layers are marked trainable: false, i.e. Keras' ImageNet weights as they were; only its dense
// head was trained (on photographs, for content moderation) and that head is not used here.
//
// The package is fetched once, before training, from the npm registry (never by the gateway):
//   npm run train:weights        (= node training/pretrained/extract_nsfwjs.js --ensure)
// does nothing when training/cache/mobilenet_v2_imagenet.{json,bin} already hold this tarball's weights;
// otherwise it runs `npm pack nsfwjs@4.4.0 --pack-destination training/cache` unless the tarball is there,
// checks its sha256 (below) and extracts. By hand, the same in two steps:
//   npm pack nsfwjs@4.4.0 --pack-destination training/cache
//   node training/pretrained/extract_nsfwjs.js training/cache/nsfwjs-4.4.0.tgz training/cache/mobilenet_v2_imagenet
// writes <out>.json (each tensor's Keras name, shape and byte offset) and <out>.bin (float32,
// dequantized from the package's uint8 storage: value = min + scale * q). No dependencies: the
// tarball is read with zlib and a minimal tar reader, the browserified model files are evaluated
// as CommonJS modules.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const zlib = require('node:zlib');
const crypto = require('node:crypto');
const vm = require('node:vm');

const PACKAGE_SHA256 = '585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382'; // nsfwjs-4.4.0.tgz
const MODEL = 'package/dist/models/mobilenet_v2/';
const CACHE = path.join(__dirname, '..', 'cache');
const TARBALL = path.join(CACHE, 'nsfwjs-4.4.0.tgz');
const WEIGHTS = path.join(CACHE, 'mobilenet_v2_imagenet');

function untar(buf) {
  const files = new Map();
  for (let off = 0; off + 512 <= buf.length; ) {
    const name = buf.toString('utf8', off, off + 100).replace(/\0.*$/s, '');
    if (!name) break;
    const size = parseInt(buf.toString('utf8', off + 124, off + 136).replace(/\0.*$/s, '').trim() || '0', 8);
    files.set(name, buf.subarray(off + 512, off + 512 + size));
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

function loadModule(source) {
  const module = { exports: {} };
  vm.runInNewContext(source, { module, exports: module.exports, require: undefined, define: undefined,
    window: undefined, global: undefined, self: undefined });
  return module.exports;
}

/** True when <out>.json and <out>.bin exist and were extracted from the pinned tarball. */
function extracted(out) {
  try {
    const index = JSON.parse(fs.readFileSync(out + '.json', 'utf8'));
    const last = index.tensors[index.tensors.length - 1];
    const n = last.shape.reduce((a, b) => a * b, 1);
    return index.sha256 === PACKAGE_SHA256 && fs.statSync(out + '.bin').size === last.offset + 4 * n;
  } catch {
    return false;
  }
}

/** npm run train:weights: the weights in training/cache, fetching the tarball from the npm registry only if needed. */
function ensure(tgz = TARBALL, out = WEIGHTS) {
  if (extracted(out)) {
    console.log(`ImageNet weights already in ${out}.bin (nsfwjs 4.4.0, sha256 ${PACKAGE_SHA256.slice(0, 12)}...)`);
    return;
  }
  if (!fs.existsSync(tgz)) {
    fs.mkdirSync(path.dirname(tgz), { recursive: true });
    console.log(`fetching nsfwjs 4.4.0 from the npm registry into ${path.dirname(tgz)} (once, for training only)`);
    execFileSync('npm', ['pack', 'nsfwjs@4.4.0', '--loglevel', 'error', '--pack-destination', path.dirname(tgz)], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  extract(tgz, out);
}

function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--ensure') return ensure(args[1], args[2]);
  const [tgz, out] = args;
  if (!tgz || !out) {
    console.error('usage: extract_nsfwjs.js <nsfwjs-4.4.0.tgz> <out prefix>\n   or: extract_nsfwjs.js --ensure [<tgz> <out prefix>]   (fetches the tarball with npm pack if it is absent)');
    process.exit(2);
  }
  extract(tgz, out);
}

function extract(tgz, out) {
  const packed = fs.readFileSync(tgz);
  const sha = crypto.createHash('sha256').update(packed).digest('hex');
  if (sha !== PACKAGE_SHA256) throw new Error(`${tgz}: sha256 ${sha}, expected ${PACKAGE_SHA256} (nsfwjs 4.4.0)`);
  const files = untar(zlib.gunzipSync(packed));
  const model = loadModule(files.get(MODEL + 'model.min.js').toString('utf8'));
  const [group] = model.weightsManifest;
  const data = Buffer.concat(group.paths.map((p) => {
    const encoded = loadModule(files.get(MODEL + p + '.min.js').toString('utf8'));
    return Buffer.from(encoded, 'base64');
  }));
  const index = [];
  const chunks = [];
  let read = 0;
  let written = 0;
  for (const w of group.weights) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    const q = w.quantization;
    if (!q || q.dtype !== 'uint8') throw new Error(`${w.name}: expected uint8 quantization`);
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = q.min + q.scale * data[read + i];
    read += n;
    chunks.push(Buffer.from(values.buffer));
    index.push({ name: w.name, shape: w.shape, offset: written });
    written += 4 * n;
  }
  if (read !== data.length) throw new Error(`read ${read} of ${data.length} bytes`);
  fs.writeFileSync(out + '.bin', Buffer.concat(chunks));
  fs.writeFileSync(out + '.json', JSON.stringify({ source: 'nsfwjs@4.4.0 ' + MODEL, sha256: sha,
    layers: model.modelTopology.model_config.config.layers.map((l) => ({ name: l.name, class: l.class_name,
      trainable: l.config.trainable })), tensors: index }, null, 1));
  console.log(`${index.length} tensors, ${written} bytes -> ${out}.bin`);
}

if (require.main === module) main();
module.exports = { untar, loadModule, extracted, MODEL };
