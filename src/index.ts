/** The public API of igpt (Node.js). The browser page imports the portable pieces directly. */
export * from './model/config.js';
export { ParameterTensors, initParameters, parameterCount, tensorLayout, withClassHead } from './model/parameters.js';
export { ImageGPT, computeLogits, type Batch, type ForwardResult } from './model/model.js';
export { KvDecoder } from './model/decode.js';
export type { Kernels } from './kernels/kernels.js';
export { loadKernels, type KernelChoice } from './kernels/select.js';
export { createPortableKernels } from './kernels/portable.js';
export type { Palette } from './palette/palette.js';
export { fitPalette } from './palette/kmeans.js';
export { quantize, dequantize } from './palette/quantize.js';
export { loadPalette, savePalette } from './io/palette-files.js';
export { loadImageDataset } from './data/datasets.js';
export { decodeImageBytes, type DecodeOptions, type DecodedImage } from './data/decode.js';
export { compositeOver, parseColor, DEFAULT_BACKGROUND, type Rgb } from './data/pixels.js';
export { buildTokenDataset } from './data/build.js';
export { loadTokenDataset, saveTokenDataset, type TokenDataset, type TokenSplit } from './data/tokens.js';
export { convertModelFolder, loadModelFolder, resolveModelDir, saveModelFolder } from './io/hf.js';
export { readSafetensors, writeSafetensors } from './io/safetensors.js';
export { TorchCheckpoint } from './io/torch-checkpoint.js';
export { pretrain } from './train/pretrain.js';
export { Trainer, type PretrainOptions } from './train/trainer.js';
export { evaluateNll } from './train/evaluate.js';
export { extractFeatures } from './eval/features.js';
export { trainLogisticRegression, accuracy } from './eval/logistic.js';
export { probeLayers, probeFeatures } from './eval/probe.js';
export { lowDataProbe, pixelFeatures } from './eval/lowdata.js';
export { finetune, classificationAccuracy } from './eval/finetune.js';
export { sampleAutoregressive, sampleBert, samplePixel } from './sample/sampler.js';
export { completeImages, completePixels, modelImageSide, type CompleteOptions } from './sample/complete.js';
export { completeImageFiles } from './sample/complete-files.js';
export { writeCompletionGrid, writeCompletionImages, type CompletionFigure } from './sample/grid.js';
export { listImageInputs, readImageBatches, readImageTokenBatches, type ImageInputOptions, type ImageBatch, type TokenBatch } from './data/image-inputs.js';
export { tokenFeatures } from './eval/features.js';
export { imageFileFeatures, classifyImageFiles, writeFeatureFile, type ImageFileFeatures } from './eval/image-files.js';
export {
  headClassifier, probeClassifier, readProbeClassifier, probeClassifierJson, classifyFeatures,
  type Classifier, type Classification, type ProbeClassifierJson,
} from './eval/classify.js';
export { world } from './parallel/world.js';
export { SingleProcess, type Communicator } from './parallel/communicator.js';
export { openModel, openModelAndData, checkModelMatchesData, stepsFromEpochs, type OpenedModel } from './pipeline/open.js';
export { pretrainOptions, runPretraining, type PretrainSettings, type PretrainRun } from './pipeline/pretrain.js';
export { finetuneOptions, runFinetuning, type FinetuneSettings } from './pipeline/finetune.js';
export { featuresForProbe, probeAndReport, type FeatureSettings, type SplitFeatures } from './pipeline/probe.js';
export { runLowData, type LowDataSettings } from './pipeline/lowdata.js';
export { probeCurve } from './pipeline/probe-curve.js';
export { runExperiment, type ExperimentOptions } from './pipeline/experiment.js';
