/**
 * The TLS cipher suites Sonogate offers and accepts, for DICOM TLS in both directions: forward
 * secrecy (ECDHE) and authenticated encryption (AES-GCM, ChaCha20-Poly1305) only, as BCP 195
 * (RFC 9325) recommends and DICOM's BCP 195 profiles (PS3.15 B.9-B.11) follow. OpenSSL's default
 * list would also take static-RSA and CBC-SHA1 suites (AES128-SHA) under TLS 1.2. TLS 1.3's own
 * suites are all AEAD and stay as they are.
 */
export const TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
