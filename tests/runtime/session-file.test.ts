import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { Session } from '../../src/runtime/session.js';
import { buildTransformer } from '../helpers/transformer-builder.js';
import { tempDir } from '../helpers/tmp.js';

// Sessions over more than SLIMFORMER_SESSION_FILE_BYTES of weights are created from a scratch
// file with external data (onnxruntime maps it instead of keeping three copies of the bytes).
describe('sessions created from a scratch file', () => {
  const dir = tempDir();
  afterEach(() => {
    delete process.env.SLIMFORMER_SESSION_FILE_BYTES;
  });

  it('give the same outputs as sessions from bytes, and leave the model pointing at its own data', async () => {
    const built = buildTransformer({ blocks: 2, hidden: 64, heads: 4, mlpWidth: 128, seq: 8, mask: 'additive-input' });
    const file = path.join(dir, 'm.onnx');
    saveModel(built.model, file, { externalData: true });
    const model = loadModel(file);
    const weight = model.graph.initializers.find((v) => v.initializer!.isExternal)!.initializer!;
    const feeds = built.feeds(2);

    process.env.SLIMFORMER_SESSION_FILE_BYTES = '0';
    const fromFile = await Session.create(model);
    const b = await fromFile.run(feeds);
    await fromFile.release();
    // the tensors were streamed to the scratch file, not read into memory, and still point at the source's data
    expect(weight.isExternal).toBe(true);
    expect(weight.external?.file).toBe(path.resolve(`${file}.data`));

    process.env.SLIMFORMER_SESSION_FILE_BYTES = String(2 ** 40);
    const fromBytes = await Session.create(model);
    const a = await fromBytes.run(feeds);
    await fromBytes.release();

    // exact: the same graph and weights run by the same kernels
    for (const k of Object.keys(a)) expect(Array.from(b[k]!.data as Float32Array)).toEqual(Array.from(a[k]!.data as Float32Array));
  });
});
