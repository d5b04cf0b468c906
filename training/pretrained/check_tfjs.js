#!/usr/bin/env node
// Runs the nsfwjs package's own MobileNetV2 in TensorFlow.js on a fixed synthetic picture and prints
// its five outputs and its last features as JSON, for training/mobilenet.py --check (which runs the
// PyTorch port on the same picture and compares). A one-off check, by hand; TensorFlow.js is not a
// dependency of this project:
//   npm install --prefix /tmp/tfjs @tensorflow/tfjs@4
//   NODE_PATH=/tmp/tfjs/node_modules node training/pretrained/check_tfjs.js training/cache/nsfwjs-4.4.0.tgz > /tmp/tfjs.json
//   /usr/bin/python3 training/mobilenet.py --check /tmp/tfjs.json
// (session 24: largest difference 2.2e-5 in the features, whose values reach about 6, and 5.2e-8 in the outputs)
'use strict';
const zlib = require('node:zlib');
const fs = require('node:fs');
const tf = require('@tensorflow/tfjs');
const { untar, loadModule, MODEL } = require('./extract_nsfwjs.js');

const SIZE = 224;

async function main() {
  const files = untar(zlib.gunzipSync(fs.readFileSync(process.argv[2])));
  const model = JSON.parse(JSON.stringify(loadModule(files.get(MODEL + 'model.min.js').toString('utf8'))));
  const [group] = model.weightsManifest;
  const data = Buffer.concat(group.paths.map((p) => Buffer.from(loadModule(files.get(MODEL + p + '.min.js').toString('utf8')), 'base64')));
  const net = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: model.modelTopology, weightSpecs: group.weights,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.length) }));
  const v = new Float32Array(SIZE * SIZE * 3); // the picture training/mobilenet.py --check builds
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) for (let c = 0; c < 3; c++)
    v[(y * SIZE + x) * 3 + c] = Math.sin(x / 7 + c) * Math.cos(y / 11 - c) * 0.8 + 0.1 * Math.sin((x * y) / 50);
  const input = tf.tensor4d(v, [1, SIZE, SIZE, 3]);
  const outputs = Array.from(await net.predict(input).data());
  const features = Array.from(await tf.model({ inputs: net.inputs, outputs: net.getLayer('out_relu').output }).predict(input).data());
  console.log(JSON.stringify({ outputs, features }));
}

main();
