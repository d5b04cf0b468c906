/**
 * The one source of truth for Sonogate's configuration: defaults, validation and the meaning
 * of every key. `config/default.json` is this schema's defaults written out.
 */
import { isIP } from 'node:net';
import { validate as isValidCron } from 'node-cron';
import { z } from 'zod';

/** housekeeping.maxStorageGB's unit: GB as disks are sold (`df -H`), not GiB */
export const BYTES_PER_GB = 1e9;

/** timers longer than this are a mistake (and past 24.8 days Node fires them at once) */
const DAY_SECONDS = 86_400;

const PROXY_ADDRESS_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);
const PROXY_ADDRESSES_MESSAGE = 'give the proxies\' addresses, comma separated: IP addresses, subnets (10.1.0.0/16) or loopback, linklocal, uniquelocal';

/** What express's "trust proxy" takes as a string: names, IP addresses and subnets, comma separated. */
function proxyAddresses(v: string): boolean {
  return v.split(',').every((part) => {
    const p = part.trim();
    if (PROXY_ADDRESS_NAMES.has(p)) return true;
    const [ip, bits, extra] = p.split('/');
    const family = isIP(ip);
    if (!family || extra !== undefined) return false;
    return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)) || isIP(bits) === 4;
  });
}

const aeTitle = z
  .string()
  .min(1)
  .max(16)
  .regex(/^[\x20-\x5b\x5d-\x7e]+$/, 'an AE title is 1–16 printable ASCII characters without backslash')
  .refine((s) => s.trim().length > 0, 'an AE title cannot be only spaces');

const port = z.number().int().min(1).max(65535);

const cronExpression = z.string().refine((s) => isValidCron(s), 'not a valid cron expression (node-cron: [second] minute hour day-of-month month day-of-week)');

const tlsFiles = z
  .object({
    cert: z.string().min(1).describe('PEM certificate file'),
    key: z.string().min(1).describe('PEM private key file'),
    ca: z.string().min(1).describe('PEM CA bundle used to verify the peer'),
  })
  .strict();

export const listenerTlsSchema = tlsFiles
  .extend({
    port: port.default(2762),
    requireClientCert: z.boolean().default(true),
    /** false closes the plain (non-TLS) DICOM port */
    plain: z.boolean().default(true),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    /**
     * PEM certificate revocation list(s) issued by the CA in `ca`: a client certificate listed there
     * is refused at the handshake. Read at start; restart after the CA publishes a new one.
     */
    crl: z.string().min(1).optional(),
  })
  .strict();

export const callerSchema = z
  .object({
    aeTitle,
    /** IP address the association must come from; omitted = any host */
    host: z.string().min(1).optional(),
    /**
     * subject CN of the client certificate this caller must present (DICOM TLS, verified against
     * dicom.tls.ca); an entry with it never matches a plain-TCP association
     */
    certificateCN: z.string().min(1).optional(),
    /** names of the destinations that get this caller's results; omitted = every destination */
    destinations: z.array(z.string().min(1)).optional(),
    /**
     * send this caller's results back to it (C-STORE SCP at host:port under aeTitle); tls: true
     * connects with DICOM TLS, presenting dicom.tls's certificate and verifying the caller's
     * against dicom.tls.ca (results of a TLS caller should not travel back in the clear)
     */
    returnToSender: z
      .object({ port, host: z.string().min(1).optional(), aeTitle: aeTitle.optional(), tls: z.boolean().default(false) })
      .strict()
      .optional(),
  })
  .strict();

/** A regular expression given as a string (JavaScript syntax, matched case-insensitively). */
const regexSource = z.string().min(1).refine((src) => {
  try {
    new RegExp(src, 'i');
    return true;
  } catch {
    return false;
  }
}, 'not a valid regular expression');

/**
 * Which ultrasound instances are analysed (SOP class US is always required; see
 * src/pipeline/route.ts). Empty lists and null mean "no filter": the defaults analyse every US
 * instance, as before this key existed. The others are stored but skipped ('route.filtered').
 */
export const analyzeRulesSchema = z
  .object({
    /** BodyPartExamined must be one of these (case-insensitive), e.g. ["BREAST"]; [] = any */
    bodyParts: z.array(z.string().min(1).max(64)).default([]),
    /**
     * an instance without BodyPartExamined passes the bodyParts filter unless this is true
     * (many scanners leave it empty)
     */
    requireBodyPart: z.boolean().default(false),
    /** StudyDescription must match this regular expression (case-insensitive); null = any */
    studyDescription: regexSource.nullable().default(null),
    /** StationName must be one of these (case-insensitive); [] = any station */
    stations: z.array(z.string().min(1).max(64)).default([]),
  })
  .strict();

export const destinationSchema = z
  .object({
    name: z.string().min(1).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
    aeTitle,
    host: z.string().min(1),
    port,
    tls: tlsFiles.nullable().default(null),
  })
  .strict();

export const configSchema = z
  .object({
    dicom: z
      .object({
        aeTitle: aeTitle.default('SONOGATE'),
        host: z.string().min(1).default('0.0.0.0'),
        port: port.default(11112),
        /** empty = accept any calling AE */
        allowedCallers: z.array(callerSchema).default([]),
        tls: listenerTlsSchema.nullable().default(null),
        /** largest instance accepted; larger ones are refused with A700 */
        maxInstanceBytes: z.number().int().positive().default(2 * 1024 * 1024 * 1024),
        /** seconds an idle association may stay open */
        associationTimeoutSeconds: z.number().int().positive().max(DAY_SECONDS).default(60),
        /** connections open at once, plain and TLS together; more are closed as they arrive */
        maxAssociations: z.number().int().positive().max(10_000).default(64),
      })
      .strict()
      .prefault({}),
    destinations: z
      .array(destinationSchema)
      .default([])
      .refine((d) => new Set(d.map((x) => x.name)).size === d.length, 'destination names must be unique'),
    http: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
        /**
         * express "trust proxy" when the dashboard sits behind a TLS reverse proxy: false, the number
         * of proxies in front (1), or their addresses ("loopback", "10.0.0.1"). Decides the client
         * address (login rate limit, audit log) and whether a request came over HTTPS. `true` is
         * refused: it would take any X-Forwarded-For a client makes up as its address. The session
         * secret is not a key: it comes from SONOGATE_SESSION_SECRET, else one is generated and kept
         * in the database.
         */
        trustProxy: z
          .union([z.literal(false), z.number().int().min(0), z.string().min(1).refine(proxyAddresses, PROXY_ADDRESSES_MESSAGE)], {
            error: (issue) =>
              issue.input === true
                ? 'true would trust any X-Forwarded-For a client sends, so anyone could forge their address (rate limits, audit log): give the number of proxies in front (e.g. 1) or their addresses (e.g. "loopback")'
                : undefined,
          })
          .default(false),
        /**
         * host names the dashboard answers to (the Host header, or X-Forwarded-Host behind a trusted
         * proxy), against DNS rebinding: a page the admin visits re-points its own name at the
         * dashboard. IP addresses are always accepted (rebinding needs a name). Absent: only
         * "localhost" when the dashboard listens on a loopback address, any name otherwise.
         * An entry ".example.org" allows that domain and its subdomains; "*" allows any name.
         */
        allowedHosts: z.array(z.string().min(1).regex(/^(\*|\.?[a-z0-9-]+(\.[a-z0-9-]+)*)$/i, 'a host name, ".domain" or "*"')).optional(),
        /** Secure flag of the session cookie: true (HTTPS only), false, or "auto" (set when the request came over HTTPS) */
        secureCookie: z.union([z.boolean(), z.literal('auto')]).default('auto'),
        /** a dashboard session ends after this many minutes without a request */
        sessionIdleMinutes: z.number().positive().max(7 * 24 * 60).default(60),
        /** failed sign-ins allowed per client address and window before answering 429 */
        loginRateLimit: z
          .object({ max: z.number().int().min(1).default(10), windowSeconds: z.number().positive().default(900) })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    dataDir: z.string().min(1).default('./data'),
    study: z
      .object({ quietSeconds: z.number().positive().max(DAY_SECONDS).default(30) })
      .strict()
      .prefault({}),
    inference: z
      .object({
        model: z.string().min(1).default('model/model.json'),
        providers: z.array(z.enum(['cuda', 'cpu'])).min(1).default(['cuda', 'cpu']),
        /** worker processes running onnxruntime sessions */
        workers: z.number().int().min(1).max(16).default(1),
        /** frames per inference call (cine frames are batched) */
        batchSize: z.number().int().min(1).max(64).default(8),
        /**
         * a worker whose resident memory is above this (MB) after a request is replaced by a fresh one
         * once idle: it would otherwise keep the memory of the largest instance it analysed; 0 = never
         */
        workerRecycleRssMB: z.number().int().min(0).default(1024),
        /** components smaller than this (pixels of the analysed region) are dropped */
        minLesionAreaPixels: z.number().int().min(0).default(100),
        /** components smaller than this fraction of the frame's largest are dropped (0 keeps all) */
        minRelativeLesionArea: z.number().min(0).max(1).default(0),
        /**
         * an outline with more than this fraction of its pixels black in the picture lies outside the
         * scan sector (on the background, or the burned-in text on it) and is dropped; 1 keeps all
         */
        maxBlackLesionFraction: z.number().min(0).max(1).default(0.5),
        /**
         * a hole inside an outline is part of the lesion (its SEG, area and SR outline then agree);
         * false keeps the thresholded mask as it is
         */
        fillLesionHoles: z.boolean().default(true),
        /** report no lesion on a frame the classifier calls normal (fewer false lesions) */
        suppressLesionsWhenNormal: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    routing: z
      .object({ analyze: analyzeRulesSchema.prefault({}) })
      .strict()
      .prefault({}),
    outputs: z
      .object({ seg: z.boolean().default(true), sr: z.boolean().default(true), overlay: z.boolean().default(true), keyImages: z.boolean().default(true) })
      .strict()
      .prefault({}),
    send: z
      .object({
        /** first retry delay; doubles per attempt up to maxDelaySeconds */
        initialDelaySeconds: z.number().positive().max(DAY_SECONDS).default(5),
        maxDelaySeconds: z.number().positive().max(DAY_SECONDS).default(600),
        timeoutSeconds: z.number().positive().max(DAY_SECONDS).default(30),
        /**
         * the slowest link rate (KiB/s) a send must still get through: each object may take
         * timeoutSeconds plus its size at this rate before the association is given up
         */
        minRateKiBps: z.number().positive().default(128),
      })
      .strict()
      .refine((s) => s.initialDelaySeconds <= s.maxDelaySeconds, { message: 'initialDelaySeconds must not exceed maxDelaySeconds', path: ['initialDelaySeconds'] })
      .prefault({}),
    housekeeping: z
      .object({
        /**
         * received image files older than this many days are deleted (results, records and the
         * audit trail stay); a study whose results are not all delivered keeps its files; 0 keeps files forever
         */
        retentionDays: z.number().min(0).default(30),
        /**
         * a study whose results are all delivered (or whose failures an admin discarded), whose
         * received images retention has deleted, and in which nothing happened for this many days
         * goes entirely: result files and database rows (the audit log stays); 0 keeps them forever.
         * Unset: 90, or retentionDays when that is longer (a config written before this key existed
         * keeps starting)
         */
        resultRetentionDays: z.number().min(0).optional(),
        /**
         * a bound on the bytes the data folder holds by the database's account (received images not
         * yet deleted, result files), in GB of 10^9 bytes; over it, housekeeping deletes, oldest
         * activity first, the received images of studies that owe nothing, then whole settled
         * studies, as the age rules would; never anything of a study that owes something. 0 = no cap
         */
        maxStorageGB: z.number().min(0).default(0),
        /** cron schedules (node-cron syntax, server local time) */
        retentionSchedule: cronExpression.default('30 3 * * *'),
        /** when the size cap is checked (also after the age rules on retentionSchedule); nothing is done without a cap */
        storageCapSchedule: cronExpression.default('*/15 * * * *'),
        /** puts sends that failed because their destination was missing back in the queue, and wakes the sender */
        retrySweepSchedule: cronExpression.default('*/10 * * * *'),
        /** one summary line per day in the log (received, processed, failed, sent, pending) */
        summarySchedule: cronExpression.default('0 7 * * *'),
      })
      .strict()
      .refine((h) => h.resultRetentionDays === undefined || h.resultRetentionDays === 0 || h.resultRetentionDays >= h.retentionDays, {
        // a study's records go only after its images: a shorter setting would not be honoured
        message: 'must be 0 (keep results forever) or at least housekeeping.retentionDays: results and records are removed only after the received images',
        path: ['resultRetentionDays'],
      })
      .transform(({ resultRetentionDays, ...h }) => ({ ...h, resultRetentionDays: resultRetentionDays ?? Math.max(90, h.retentionDays) }))
      .prefault({}),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    // checks across keys, each reported under the key that has to change
    const names = new Set(c.destinations.map((d) => d.name));
    c.dicom.allowedCallers.forEach((caller, i) =>
      caller.destinations?.forEach((name, j) => {
        if (!names.has(name)) ctx.addIssue({ code: 'custom', path: ['dicom', 'allowedCallers', i, 'destinations', j], message: `no destination named "${name}" in destinations` });
      }),
    );
    c.dicom.allowedCallers.forEach((caller, i) => {
      if (caller.returnToSender?.tls && !c.dicom.tls) {
        ctx.addIssue({ code: 'custom', path: ['dicom', 'allowedCallers', i, 'returnToSender', 'tls'], message: "needs dicom.tls: its certificate, key and CA are the gateway's identity and trust on the way back" });
      }
    });
    if (c.http.secureCookie === true && c.http.trustProxy === false) {
      // the dashboard itself speaks plain HTTP: a Secure cookie is only ever set for a request known
      // to have come over HTTPS, i.e. through a trusted TLS proxy; without one nobody could sign in
      ctx.addIssue({
        code: 'custom',
        path: ['http', 'secureCookie'],
        message: 'true needs http.trustProxy (the TLS reverse proxy in front, e.g. 1 or "loopback"): the dashboard serves plain HTTP, so without a trusted proxy no session cookie is ever set and nobody can sign in',
      });
    }
    if (c.dicom.tls?.plain && c.dicom.tls.port === c.dicom.port) {
      ctx.addIssue({ code: 'custom', path: ['dicom', 'tls', 'port'], message: `the TLS port must differ from dicom.port (${c.dicom.port}) while the plain port is open` });
    }
  });

export type Config = z.infer<typeof configSchema>;
export type DestinationConfig = z.infer<typeof destinationSchema>;
export type CallerConfig = z.infer<typeof callerSchema>;
export type ListenerTlsConfig = z.infer<typeof listenerTlsSchema>;
export type TlsFilesConfig = z.infer<typeof tlsFiles>;
export type AnalyzeRules = z.infer<typeof analyzeRulesSchema>;
