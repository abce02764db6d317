// Reference outputs of the ORIGINAL face-api nets (npm @vladmandic/face-api 1.7.15, MIT) on the fixed inputs written
// by faceapi_inputs.py, computed with TF.js's pure-JS cpu backend (no native binary), for tests/priors/test_faceapi_priors.py.
//
//   cd training/reference_outputs && npm ci && python faceapi_inputs.py && node faceapi_reference.mjs [model_dir]
//
// model_dir defaults to the package's own model/ folder in node_modules. Writes tests/priors/fixtures/faceapi/reference.json.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
// The node-wasm build imports plain @tensorflow/tfjs (whose cpu backend is pure JS); we select 'cpu' below.
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { tf } = faceapi;

const fixtures = join(here, '..', '..', 'tests', 'fixtures', 'faceapi');
const modelDir = process.argv[2] ?? join(here, 'node_modules', '@vladmandic', 'face-api', 'model');

// Minimal .npy (format 1.x/2.x, little-endian uint8, C order) reader.
function readNpyUint8(path) {
  const buf = readFileSync(path);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.subarray(start, start + headerLen).toString('latin1');
  if (!header.includes("'descr': '|u1'") || header.includes("'fortran_order': True")) {
    throw new Error(`${path}: expected a C-order uint8 array, header ${header}`);
  }
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  return { shape, data: buf.subarray(start + headerLen) };
}

function loadBatch(size) {
  const { shape, data } = readNpyUint8(join(fixtures, `inputs_${size}.npy`));
  const batch = tf.tensor4d(Float32Array.from(data), shape, 'float32');
  // An array of 3-D tensors is face-api's batch input; at the net's own size it neither pads nor resizes.
  return tf.unstack(batch);
}

const rows = (tensor) => tensor.arraySync();

await tf.setBackend('cpu');
await tf.ready();
const { nets } = faceapi;
await nets.faceRecognitionNet.loadFromDisk(modelDir);
await nets.faceLandmark68Net.loadFromDisk(modelDir);
await nets.faceLandmark68TinyNet.loadFromDisk(modelDir);

const input150 = await faceapi.toNetInput(loadBatch(150));
const input112 = await faceapi.toNetInput(loadBatch(112));
const landmarkOutputs = (net) => ({
  // what face-api returns (for a square input, coordinates normalised to the crop)
  logits: rows(net.forwardInput(input112)),
  // the pooled bottleneck the landmark FC layer reads
  pooler_output: rows(net.faceFeatureExtractor.forwardInput(input112).reshape([input112.batchSize, -1])),
});

const reference = {
  source: 'npm @vladmandic/face-api@1.7.15 (dist/face-api.node-wasm.js)',
  tfjs_version: tf.version_core,
  backend: tf.getBackend(),
  inputs: 'inputs_150.npy / inputs_112.npy: uint8 RGB (batch, size, size, 3), [0] astronaut face, [1] seeded noise',
  recognition: { logits: rows(nets.faceRecognitionNet.forwardInput(input150)) },
  landmarks: landmarkOutputs(nets.faceLandmark68Net),
  landmarks_tiny: landmarkOutputs(nets.faceLandmark68TinyNet),
};
writeFileSync(join(fixtures, 'reference.json'), `${JSON.stringify(reference)}\n`);
console.log(`wrote ${join(fixtures, 'reference.json')} (backend ${reference.backend}, tfjs ${reference.tfjs_version})`);
