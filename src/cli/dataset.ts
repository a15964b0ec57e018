import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { bindDataset } from '../data/bind.js';
import { checkDatasetOutput, writeDataset } from '../data/write-dataset.js';
import { loadModel } from '../onnx/load.js';
import { addRawDataShared, datasetFromFlags, type RawDataFlags } from './raw-data.js';
import { runCommand } from './run-command.js';
import { modelFile } from './model-input.js';

interface MakeFlags extends RawDataFlags {
  text?: string;
  images?: string;
  output: string;
  json?: boolean;
}

export function registerDataset(program: Command): void {
  const dataset = program.command('dataset').description('make datasets of tensors from raw text or images');
  const make = dataset
    .command('make')
    .description('tokenize text or preprocess images for a model and write the samples as a test-data folder or .npz, so every later run (a CI gate) reads the same tensors')
    .argument('<model>', 'the ONNX model (file or model folder) the samples are for (its folder gives tokenizer.json / preprocessor_config.json / config.json)')
    .option('--text <file>', '.jsonl with {"text", "label"} records, or plain text')
    .option('--images <dir>', 'folder of PNG/JPEG images, or of class sub-folders of them')
    .requiredOption('-o, --output <path>', 'a new folder (ONNX test-data layout) or a file ending in .npz')
    .option('--json', 'print one JSON object');
  addRawDataShared(make).action((modelPath: string, flags: MakeFlags) =>
    runCommand(async () => {
      modelPath = modelFile(modelPath);
      if ((flags.text === undefined) === (flags.images === undefined)) throw new UserError('give the raw data: --text FILE or --images DIR (one of them)');
      checkDatasetOutput(flags.output);
      const model = loadModel(modelPath);
      const data = (await datasetFromFlags({ text: flags.text, images: flags.images, flags: '--text, --images' }, flags, model, modelPath))!;
      const bound = bindDataset(data, model); // the samples fit the model before anything is written
      writeDataset(data, flags.output);
      const result = { model: modelPath, source: data.path, output: flags.output, samples: data.size, labelled: bound.hasLabels, inputs: bound.inputs.map((i) => i.name) };
      process.stdout.write(flags.json ? JSON.stringify(result) + '\n' : `${flags.output}: ${data.size} samples${bound.hasLabels ? ' with labels' : ''} for ${modelPath} (inputs ${result.inputs.join(', ')}) from ${data.path}\n`);
    }),
  );
}
