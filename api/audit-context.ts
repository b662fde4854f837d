import type { FastifyRequest } from 'fastify';
import type { FieldEncryption } from '../models/encryption';

const MAX_USER_AGENT = 512;

/** A value for an audit job's `sealed` fields: encrypted under the company's data key, as base64. */
export async function sealValue(
  encryption: Pick<FieldEncryption, 'encrypt'>,
  companyId: string,
  value: string,
): Promise<string> {
  return Buffer.from((await encryption.encrypt(companyId, value)).buffer).toString('base64');
}

/**
 * Where a request came from (ip, user agent) can identify a person, so it goes
 * into the audit job only as ciphertext under the company's data key.
 */
export async function sealRequestContext(
  request: FastifyRequest,
  companyId: string,
  encryption: Pick<FieldEncryption, 'encrypt'>,
): Promise<{ sourceIp?: string; userAgent?: string }> {
  const seal = (value: string) => sealValue(encryption, companyId, value);
  const userAgent = request.headers['user-agent'];
  return {
    sourceIp: await seal(request.ip),
    ...(typeof userAgent === 'string' && userAgent
      ? { userAgent: await seal(userAgent.slice(0, MAX_USER_AGENT)) }
      : {}),
  };
}
