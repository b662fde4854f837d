import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import { enabledEventsSchema } from './webhook-catalog';

/**
 * Addresses a webhook may never be sent to in production: private, loopback, link-local (cloud metadata at
 * 169.254.169.254 among them), carrier-grade NAT, unspecified, and their IPv6 counterparts. At connect time
 * `request-filtering-agent` enforces the same on what a host name resolves to; this list refuses literal hosts when
 * an endpoint is saved, so the mistake is seen at once.
 */
const REFUSED = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const)
  REFUSED.addSubnet(network, prefix, 'ipv4');
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
] as const)
  REFUSED.addSubnet(network, prefix, 'ipv6');

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

const INTERNAL_NAMES = /(^|\.)(localhost|local|internal|localdomain)$/i;

export interface WebhookUrlRules {
  /** Production: https only. */
  httpsOnly: boolean;
  /** Outside production by default (WEBHOOK_ALLOW_LOOPBACK): a local receiver for tests and the demo. */
  allowLoopback: boolean;
}

/** Why a webhook URL is refused, or undefined when it may be saved. */
export function webhookUrlProblem(raw: string, rules: WebhookUrlRules): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an http(s) URL';
  if (rules.httpsOnly && url.protocol !== 'https:') return 'must be an https URL';
  if (url.username || url.password) return 'may not carry credentials';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const family = isIP(host);
  const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host)?.[1] : undefined;
  const address = mapped ?? host;
  const type = mapped ? 'ipv4' : family === 6 ? 'ipv6' : 'ipv4';
  const loopback =
    host.toLowerCase() === 'localhost' || ((mapped !== undefined || family !== 0) && LOOPBACK.check(address, type));
  if (loopback) return rules.allowLoopback ? undefined : 'may not point at a loopback address';
  if ((mapped !== undefined || family !== 0) && REFUSED.check(address, type))
    return 'may not point at a private, link-local or metadata address';
  if (family === 0 && INTERNAL_NAMES.test(host)) return 'may not point at an internal host name';
  return undefined;
}

export const webhookUrlSchema = z.string().trim().min(1).max(2_048);

export const webhookEndpointCreateSchema = z.strictObject({
  url: webhookUrlSchema,
  enabledEvents: enabledEventsSchema,
  description: z
    .string()
    .regex(/^[A-Za-z0-9 _.,:/()-]{0,100}$/, 'letters, digits and simple punctuation only')
    .optional()
    .meta({ description: 'A label of your own (not PHI): it is stored and shown as is.' }),
  officeId: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/)
    .optional()
    .meta({ description: "Only this office's events; absent: every event of the company." }),
  disabled: z.boolean().optional(),
});
export type WebhookEndpointCreate = z.infer<typeof webhookEndpointCreateSchema>;

export const webhookEndpointUpdateSchema = z
  .strictObject({
    url: webhookUrlSchema.optional(),
    enabledEvents: enabledEventsSchema.optional(),
    description: webhookEndpointCreateSchema.shape.description,
    disabled: z.boolean().optional(),
  })
  .refine((update) => Object.keys(update).length > 0, 'name at least one field to change');
export type WebhookEndpointUpdate = z.infer<typeof webhookEndpointUpdateSchema>;

/** How long the previous secret still signs after a rotation (both signatures are sent meanwhile). */
export const SECRET_ROTATION_GRACE_MS = 24 * 60 * 60 * 1000;

/** The first bytes of a receiver's answer kept on a delivery attempt (for debugging, never more). */
export const RESPONSE_EXCERPT_BYTES = 256;

/** The delay before retry number `retry` (1-based); the last step repeats if asked beyond the schedule. */
export function retryDelayMs(schedule: readonly number[], retry: number): number {
  return schedule[Math.min(Math.max(retry, 1), schedule.length) - 1] ?? 0;
}
