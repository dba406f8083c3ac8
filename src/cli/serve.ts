/** `igpt serve`: the browser demo over HTTP (the server: src/pipeline/serve.ts). */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { CommandModule } from './command.js';
import { safetensorsFolder } from '../io/hf.js';
import { checkBuiltPage, checkServableModel, defaultWebDir, startServer, testImagesForModel, writeTestImages } from '../pipeline/serve.js';
import { parseIntOption, parseSplitOption } from './common.js';

interface Flags {
  model?: string; data?: string; split: string; first: string; images: string;
  port: string; host: string; web?: string; writeTestImages?: string;
}

export const serveCommand: CommandModule = {
  register(program: Command): void {
    program.command('serve')
      .description('serve the browser demo: live image completion in the page, on this model')
      .option('--model <dir|owner/name>', 'model folder (config.json, model.safetensors or pytorch_model.bin, ' +
                               'preprocessor_config.json), or owner/name in the Hugging Face cache; ' +
                               'default: the small Fashion-MNIST model shipped with the page')
      .option('--data <dir>', 'token dataset whose images the page offers to complete (default: the shipped ones)')
      .option('--split <name>', 'split of --data', 'test')
      .option('--first <i>', 'index of the first image taken from the split', '0')
      .option('--images <n>', 'images taken from the split', '16')
      .option('--port <n>', 'port (0: any free one)', '8080')
      .option('--host <addr>', 'address to listen on', '127.0.0.1')
      .option('--web <dir>', 'the built page (default: dist/web of this package)')
      .option('--write-test-images <file>', 'write the test-image JSON of --data to a file and exit ' +
                                            '(e.g. web/public/test-images.json) instead of serving')
      .action(async (flags: Flags) => {
        const split = parseSplitOption(flags.split);
        const first = parseIntOption('--first', flags.first, 0);
        const count = parseIntOption('--images', flags.images, 1, 256);
        const port = parseIntOption('--port', flags.port, 0, 65535);
        const webDir = flags.web ?? defaultWebDir();
        if (!flags.writeTestImages) checkBuiltPage(webDir);
        // The page reads safetensors only: a PyTorch-only folder is served from a converted copy.
        const served = flags.model ? safetensorsFolder(flags.model) : { dir: join(webDir, 'model'), temporary: false };
        const modelDir = served.dir;
        if (served.temporary) process.once('exit', () => rmSync(modelDir, { recursive: true, force: true }));
        const model = checkServableModel(modelDir);
        const testImages = flags.data ? testImagesForModel(flags.data, split, first, count, model) : null;
        if (flags.writeTestImages) {
          if (!testImages) throw new Error('--write-test-images needs --data');
          writeTestImages(flags.writeTestImages, testImages);
          console.log(`${flags.writeTestImages}: ${testImages.images.length} ${flags.split} images of ${flags.data}`);
          return;
        }
        const { server, url } = await startServer({ webDir, modelDir, testImages, port, host: flags.host });
        console.log(`igpt serve: ${url}  (model ${flags.model ?? modelDir}, ${model.side}×${model.side}, ${model.k} colors; ` +
                    `test images from ${flags.data ?? 'the page'}; Ctrl-C stops)`);
        const stop = (): void => { server.close(); server.closeAllConnections(); };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
  },
};
