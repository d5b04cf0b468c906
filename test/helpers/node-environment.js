// Jest runs tests in a separate V8 context whose typed-array constructors differ from Node's.
// onnxruntime-node creates output tensors from Node's own Float32Array and checks them with
// `instanceof` against the test context's constructor, which fails. Sharing the host's
// typed-array constructors (and Buffer) with the test context avoids that realm mismatch.
const NodeEnvironment = require('jest-environment-node').TestEnvironment;

class SharedTypedArrayEnvironment extends NodeEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of [
      'ArrayBuffer', 'SharedArrayBuffer', 'Uint8Array', 'Uint8ClampedArray', 'Int8Array', 'Uint16Array', 'Int16Array',
      'Uint32Array', 'Int32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array', 'DataView',
    ]) {
      this.global[name] = globalThis[name];
    }
  }
}

module.exports = SharedTypedArrayEnvironment;
