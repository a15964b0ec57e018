// Composes passes through the public API: the same model as recipes/w8a8-float-classifier.json.
//   npm run build && node examples/compose.mjs [MODEL] [CALIB] [OUT]
import { cleanup, load, openDataset, pipeline, quantize, saveModel } from 'slimformer';

const [modelPath = 'fixtures/vit_mnist.onnx', calibPath = 'calibration/vit_mnist/calib', out = 'vit_mnist.w8a8.onnx'] = process.argv.slice(2);

const model = load(modelPath);
const steps = pipeline([
  // static INT8, the classifier kept in float
  quantize({ scheme: 'w8a8', exclude: ['classifier'] }),
  cleanup(),
]);
const { model: compressed, report } = await steps.apply(model, { calibration: openDataset(calibPath) });
saveModel(compressed, out);

const q = report.summaryOf('quantize'); // QuantizeSummary (typed in TypeScript)
console.log(`${modelPath} -> ${out}: ${q.layers.length} layers at ${q.layers[0].bits} bits, ${q.excluded.length} kept in float`);
for (const o of q.outputs) console.log(`output ${o.name}: SQNR ${o.sqnr.toFixed(1)} dB against the float model`);
