#!/usr/bin/env node
// A native-`solc` command line over npm `solc` (the official compiler built to WebAssembly).
//
// No native solc can be downloaded on our machines, but py-solc-x (and so ape-solidity) only needs a
// binary that speaks solc's command line. This shim implements the subset they call:
//   --version                              -> "Version: X.Y.Z+commit.H..." line
//   --help                                 -> usage with the --combined-json output list
//   --standard-json [--base-path P] [--allow-paths L]   (JSON on stdin)
//   --combined-json OUTPUTS [opts] FILE... | -           (inline compiles)
// Imports that are not in the input are read from the base path (or the current directory).
'use strict';

const fs = require('fs');
const path = require('path');

// solcjs prints notices (e.g. about the SMT solver) on stdout; only our JSON may go there.
const writeStdout = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
console.log = console.error;
const solc = require('solc');

const COMBINED_OUTPUTS = [
  'abi', 'asm', 'ast', 'bin', 'bin-runtime', 'devdoc', 'function-debug', 'function-debug-runtime',
  'generated-sources', 'generated-sources-runtime', 'hashes', 'metadata', 'opcodes',
  'srcmap', 'srcmap-runtime', 'storage-layout', 'userdoc',
];

// Output selection for each --combined-json name: [standard-json selector, getter of a contract's output].
const COMBINED_SELECTORS = {
  'abi': ['abi', (c) => c.abi],
  'asm': ['evm.legacyAssembly', (c) => c.evm.legacyAssembly],
  'bin': ['evm.bytecode.object', (c) => c.evm.bytecode.object],
  'bin-runtime': ['evm.deployedBytecode.object', (c) => c.evm.deployedBytecode.object],
  'devdoc': ['devdoc', (c) => c.devdoc],
  'function-debug': ['evm.bytecode.functionDebugData', (c) => c.evm.bytecode.functionDebugData],
  'function-debug-runtime': ['evm.deployedBytecode.functionDebugData', (c) => c.evm.deployedBytecode.functionDebugData],
  'generated-sources': ['evm.bytecode.generatedSources', (c) => c.evm.bytecode.generatedSources],
  'generated-sources-runtime': ['evm.deployedBytecode.generatedSources', (c) => c.evm.deployedBytecode.generatedSources],
  'hashes': ['evm.methodIdentifiers', (c) => c.evm.methodIdentifiers],
  'metadata': ['metadata', (c) => c.metadata],
  'opcodes': ['evm.bytecode.opcodes', (c) => c.evm.bytecode.opcodes],
  'srcmap': ['evm.bytecode.sourceMap', (c) => c.evm.bytecode.sourceMap],
  'srcmap-runtime': ['evm.deployedBytecode.sourceMap', (c) => c.evm.deployedBytecode.sourceMap],
  'storage-layout': ['storageLayout', (c) => c.storageLayout],
  'userdoc': ['userdoc', (c) => c.userdoc],
};

// Options that take a value, so that the value is not mistaken for a source file.
const VALUED_OPTIONS = new Set([
  '--base-path', '--allow-paths', '--include-path', '--combined-json', '--evm-version',
  '--optimize-runs', '--output-dir', '-o', '--revert-strings', '--metadata-hash',
]);

function parseArgs(argv) {
  const opts = { flags: new Set(), values: {}, files: [], remappings: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (VALUED_OPTIONS.has(arg)) {
      opts.values[arg] = argv[++i];
    } else if (arg.startsWith('--') && arg.includes('=')) {
      const [key, value] = arg.split(/=(.*)/s, 2);
      opts.values[key] = value;
    } else if (arg.startsWith('-') && arg !== '-') {
      opts.flags.add(arg);
    } else if (arg.includes('=') && !fs.existsSync(arg)) {
      opts.remappings.push(arg);
    } else {
      opts.files.push(arg);
    }
  }
  return opts;
}

function versionLine() {
  // solc.version() is e.g. "0.8.37+commit.f401782d.Emscripten.clang"
  return `solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`;
}

function helpText() {
  return [
    'solc, the solidity compiler commandline interface (npm solc shim)',
    `Version: ${solc.version()}`,
    '',
    'Usage: solc [options] [input_file...]',
    '',
    'Supported options:',
    '  --version             Show version and exit.',
    '  --help                Show help message and exit.',
    '  --standard-json       Switch to Standard JSON input / output mode (input on stdin).',
    '  --base-path path      Use the given path as the root of the source tree.',
    '  --allow-paths path(s) Accepted for compatibility; imports are read from the base path.',
    '  --optimize            Enable bytecode optimizer.',
    '  --optimize-runs n     Optimizer runs.',
    '  --evm-version v       Target EVM version.',
    `  --combined-json ${COMBINED_OUTPUTS.join(',')}`,
    '',
  ].join('\n');
}

function importReader(basePath) {
  return (importPath) => {
    const candidates = [path.resolve(basePath, importPath), path.resolve(importPath)];
    for (const candidate of candidates) {
      if (fs.existsSync(candidate)) {
        return { contents: fs.readFileSync(candidate, 'utf8') };
      }
    }
    return { error: `File not found: ${importPath} (looked in ${basePath})` };
  };
}

function compileStandard(inputJson, basePath) {
  return solc.compile(inputJson, { import: importReader(basePath) });
}

function compileCombined(opts, stdinText, basePath) {
  const requested = opts.values['--combined-json'].split(',');
  // `ast` is a per-source output (what slither's crytic-compile asks for); the rest are per contract.
  const withAst = requested.includes('ast');
  const outputs = requested.filter((o) => o !== 'ast');
  const unknown = outputs.filter((o) => !(o in COMBINED_SELECTORS));
  if (unknown.length) {
    throw new Error(`Unsupported --combined-json output(s): ${unknown.join(',')}`);
  }
  const sources = {};
  for (const file of opts.files) {
    if (file === '-') sources['<stdin>'] = { content: stdinText };
    else sources[file] = { content: fs.readFileSync(file, 'utf8') };
  }
  const settings = {
    outputSelection: {
      '*': { '*': outputs.map((o) => COMBINED_SELECTORS[o][0]), ...(withAst ? { '': ['ast'] } : {}) },
    },
    remappings: opts.remappings,
  };
  if (opts.flags.has('--optimize')) {
    settings.optimizer = { enabled: true, runs: Number(opts.values['--optimize-runs'] || 200) };
  }
  if (opts.values['--evm-version']) settings.evmVersion = opts.values['--evm-version'];
  const input = { language: 'Solidity', sources, settings };
  const result = JSON.parse(compileStandard(JSON.stringify(input), basePath));
  const errors = (result.errors || []).filter((e) => e.severity === 'error');
  if (errors.length) {
    throw new Error(errors.map((e) => e.formattedMessage).join('\n'));
  }
  const contracts = {};
  for (const [source, byName] of Object.entries(result.contracts || {})) {
    for (const [name, contract] of Object.entries(byName)) {
      const entry = {};
      for (const o of outputs) {
        const value = COMBINED_SELECTORS[o][1](contract);
        // Native solc prints metadata as a JSON string and everything else as parsed JSON.
        entry[o] = value;
      }
      contracts[`${source}:${name}`] = entry;
    }
  }
  const combined = { contracts, version: solc.version() };
  if (withAst) {
    // As native solc prints it: every source (imports included) with its id and AST, and the ids' order.
    const sourceIds = Object.entries(result.sources || {}).sort((a, b) => a[1].id - b[1].id);
    combined.sourceList = sourceIds.map(([name]) => name);
    combined.sources = Object.fromEntries(sourceIds.map(([name, s]) => [name, { id: s.id, AST: s.ast }]));
  }
  return JSON.stringify(combined);
}

function readStdin() {
  try {
    return fs.readFileSync(0, 'utf8');
  } catch (err) {
    return '';
  }
}

function main(argv) {
  const opts = parseArgs(argv);
  if (opts.flags.has('--version')) return { out: versionLine(), code: 0 };
  if (opts.flags.has('--help')) return { out: helpText(), code: 0 };
  const basePath = path.resolve(opts.values['--base-path'] || '.');
  if (opts.flags.has('--standard-json')) {
    return { out: compileStandard(readStdin(), basePath), code: 0 };
  }
  if (opts.values['--combined-json']) {
    const stdinText = opts.files.includes('-') ? readStdin() : '';
    return { out: compileCombined(opts, stdinText, basePath), code: 0 };
  }
  return { err: `${helpText()}\nError: unsupported arguments: ${argv.join(' ')}\n`, code: 1 };
}

let result;
try {
  result = main(process.argv.slice(2));
} catch (err) {
  result = { err: `Error: ${err.message}\n`, code: 1 };
}
// Set the exit code and let Node exit by itself: process.exit() would cut stdout above 64 KiB
// when stdout is a pipe.
process.exitCode = result.code;
if (result.out) writeStdout(result.out);
if (result.err) process.stderr.write(result.err);
