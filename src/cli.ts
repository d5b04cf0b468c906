#!/usr/bin/env node
/**
 * The `sonogate` command line (SPEC.md "Command line").
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration.
 */
import fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ConfigError, loadConfig } from './config/load';
import { Config } from './config/schema';
import { quietDicomLibraries } from './dicom/libraryLogs';
import { createLogger } from './log';
import { BackupError } from './cli/backup';
import { ModelError } from './inference/modelSpec';
import { AccountError } from './web/passwords';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

class UsageError extends Error {}

/** A path that does not exist is a usage error (exit 2), found before any work starts. */
function missingPaths(paths: string[]): void {
  const missing = paths.filter((p) => !fs.existsSync(p));
  if (missing.length) throw new UsageError(`no such file or folder: ${missing.join(', ')}`);
}

function configFrom(opts: { config?: string }): Config {
  return loadConfig(opts.config).config;
}

async function main(argv: string[]): Promise<number> {
  // analyze, evaluate and send read DICOM here (serve sets its own from log.level): the libraries'
  // console messages would be mixed into what these commands print
  quietDicomLibraries();
  const program = new Command();
  program
    .name('sonogate')
    .description('AI gateway for breast ultrasound: DICOM in, SEG + SR + overlay back to the PACS.\nDecision support only, not a diagnosis.')
    .version(require('../package.json').version)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  let code = EXIT_OK;

  program
    .command('serve')
    .description('run the gateway: DICOM listener, pipeline, sender, dashboard')
    .option('-c, --config <file>', 'configuration file (default: config/default.json or $SONOGATE_CONFIG)')
    .action(async (opts) => {
      const config = configFrom(opts);
      const { runServe } = await import('./cli/serve');
      code = await runServe(config, createLogger(config.log.level));
    });

  program
    .command('analyze')
    .description('run the pipeline on DICOM files or folders; write SEG, SR and overlay into --out; one JSON line per study')
    .argument('<paths...>', 'DICOM files or folders')
    .requiredOption('-o, --out <dir>', 'output folder')
    .option('-c, --config <file>', 'configuration file')
    .action(async (paths: string[], opts) => {
      missingPaths(paths);
      const config = configFrom(opts);
      const { runAnalyze } = await import('./cli/analyze');
      code = await runAnalyze(paths, opts.out, config, createLogger(process.env.SONOGATE_LOG_LEVEL ?? 'warn'));
    });

  program
    .command('evaluate')
    .description('score the model on images + masks in the BUSI layout; prints JSON metrics')
    .requiredOption('-d, --data <dir>', 'dataset folder (BUSI layout)')
    .option('-s, --split <file>', 'split CSV (default: DIR/split.csv)')
    .option('--subset <name>', 'split to score: train, val, test or all', 'test')
    .option('-c, --config <file>', 'configuration file (its inference.model is scored)')
    .option('--model <file>', 'model.json to score (overrides the config)')
    .option('--update-model-json', 'write the metrics into model.json (metrics.<subset>)')
    .option('--perturb <spec>', 'robustness check on every image: gain:X, gamma:X, noise:X (speckle) or zoom:X (content scaled about the centre, masks alike; 0.75 = as at a greater depth)')
    .option('--details <file>', 'also write one JSON line per image (truth, prediction, probabilities, Dice)')
    .action(async (opts) => {
      if (opts.perturb && opts.updateModelJson) throw new UsageError('--update-model-json records clean metrics only: drop --perturb');
      if (opts.perturb) {
        try {
          (await import('./evaluate/perturb')).parsePerturbation(opts.perturb);
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
      }
      const config = configFrom(opts);
      if (opts.model) config.inference.model = opts.model;
      const { runEvaluate } = await import('./cli/evaluate');
      code = await runEvaluate({ data: opts.data, split: opts.split, subset: opts.subset, updateModelJson: opts.updateModelJson, perturb: opts.perturb, details: opts.details }, config);
    });

  program
    .command('send')
    .description('C-STORE files or folders to a DICOM peer')
    .argument('<paths...>', 'DICOM files or folders')
    .requiredOption('-t, --to <AET@HOST:PORT>', 'destination')
    .option('-a, --calling-ae <aet>', 'our AE title', 'SONOGATE')
    .option('--timeout <seconds>', 'network timeout', '30')
    .option('--tls-cert <pem>', 'DICOM TLS: our certificate (with --tls-key and --tls-ca)')
    .option('--tls-key <pem>', "DICOM TLS: our certificate's private key")
    .option('--tls-ca <pem>', "DICOM TLS: CA certificate(s) the peer's certificate must chain to")
    .action(async (paths: string[], opts) => {
      const m = /^([^@]{1,16})@([^:]+):(\d{1,5})$/.exec(opts.to);
      const tlsGiven = [opts.tlsCert, opts.tlsKey, opts.tlsCa].filter((v) => v !== undefined).length;
      if (tlsGiven !== 0 && tlsGiven !== 3) throw new UsageError('DICOM TLS needs all three of --tls-cert, --tls-key and --tls-ca');
      if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) throw new UsageError(`--to must look like AET@HOST:PORT (port 1-65535), got "${opts.to}"`);
      if (!(Number(opts.timeout) > 0) || Number(opts.timeout) > 86_400) throw new UsageError(`--timeout must be a number of seconds from 1 to 86400, got "${opts.timeout}"`);
      // AE title: 1-16 characters of the default repertoire, no backslash or control characters, not all spaces (PS3.5 6.2)
      if (!/^[\x20-\x5b\x5d-\x7e]{1,16}$/.test(opts.callingAe) || !opts.callingAe.trim()) throw new UsageError(`--calling-ae must be an AE title of 1 to 16 characters, got "${opts.callingAe}"`);
      missingPaths(paths);
      const { runSend } = await import('./cli/send');
      const tls = tlsGiven ? { cert: opts.tlsCert as string, key: opts.tlsKey as string, ca: opts.tlsCa as string } : null;
      code = await runSend(paths, { aeTitle: m[1], host: m[2], port: Number(m[3]) }, opts.callingAe, Number(opts.timeout), tls);
    });

  program
    .command('backup')
    .description("copy the gateway's database (studies, sends, users, audit log) while it runs; prints one JSON line")
    .requiredOption('-o, --out <file>', 'the copy to write (must not exist)')
    .option('-c, --config <file>', 'configuration file (its dataDir holds the database)')
    .action(async (opts) => {
      const { runBackup } = await import('./cli/backup');
      process.stdout.write(`${JSON.stringify(await runBackup(configFrom(opts), opts.out))}\n`);
    });

  const users = program.command('users').description('dashboard accounts (password from stdin, or a prompt that does not echo)');
  users
    .command('add')
    .description('add a user')
    .argument('<name>', 'user name')
    .requiredOption('-r, --role <role>', 'admin (may retry, re-run, delete) or viewer (read only)')
    .option('-c, --config <file>', 'configuration file (its dataDir holds the database)')
    .action(async (name: string, opts) => {
      const { runUsersAdd } = await import('./cli/users');
      code = await runUsersAdd(configFrom(opts), name, opts.role);
    });
  users
    .command('list')
    .description('list users')
    .option('--json', 'one JSON array')
    .option('-c, --config <file>', 'configuration file')
    .action(async (opts) => {
      const { runUsersList } = await import('./cli/users');
      code = await runUsersList(configFrom(opts), !!opts.json);
    });
  users
    .command('passwd')
    .description("change a user's password (ends their sessions)")
    .argument('<name>', 'user name')
    .option('-c, --config <file>', 'configuration file')
    .action(async (name: string, opts) => {
      const { runUsersPasswd } = await import('./cli/users');
      code = await runUsersPasswd(configFrom(opts), name);
    });
  users
    .command('role')
    .description("change a user's role")
    .argument('<name>', 'user name')
    .argument('<role>', 'admin or viewer')
    .option('-c, --config <file>', 'configuration file')
    .action(async (name: string, role: string, opts) => {
      const { runUsersRole } = await import('./cli/users');
      code = await runUsersRole(configFrom(opts), name, role);
    });
  users
    .command('remove')
    .description('remove a user (ends their sessions)')
    .argument('<name>', 'user name')
    .option('-c, --config <file>', 'configuration file')
    .action(async (name: string, opts) => {
      const { runUsersRemove } = await import('./cli/users');
      code = await runUsersRemove(configFrom(opts), name);
    });

  try {
    await program.parseAsync(argv);
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (e instanceof ConfigError || e instanceof UsageError || e instanceof ModelError || e instanceof AccountError || e instanceof BackupError) {
      process.stderr.write(`sonogate: ${e.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`sonogate: ${(e as Error).stack ?? e}\n`);
    return EXIT_FAILURE;
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`sonogate: ${e}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
