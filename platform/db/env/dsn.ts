// PostgreSQL connection URIs, read exactly as the Rust tool reads them
// (crates/dbenv/src/dsn.rs): libpq's single-host URI grammar, the same
// refusals, and errors that name the variable and never quote the value
// (it may hold a password). Only what the start-up rules need is kept.

import { isIPv4, isIPv6 } from "node:net";

export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

export interface Dsn {
  user?: string;
  /** A TCP host name or address, or a unix socket directory (starts with `/`). */
  host?: string;
  port?: number;
  dbname?: string;
  sslmode?: SslMode;
}

/** A DSN that cannot be read; the message names the variable, never the value. */
export class DsnError extends Error {}

const SUPPORTED_PARAMS = [
  "host",
  "port",
  "user",
  "password",
  "dbname",
  "sslmode",
  "sslrootcert",
  "sslcert",
  "sslkey",
  "options",
  "application_name",
  "connect_timeout",
];

const SSL_MODES: SslMode[] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/** Rust's `char::is_whitespace` (Unicode White_Space): not JavaScript's `\s`, which adds U+FEFF and lacks U+0085. */
const WHITESPACE = "\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
const LEADING = new RegExp(`^[${WHITESPACE}]+`, "u");
const TRAILING = new RegExp(`[${WHITESPACE}]+$`, "u");
const BAD_HOST = new RegExp(`[${WHITESPACE}[\\]/@?#,]`, "u");

/** Rust's `str::trim`. */
function trim(text: string): string {
  return text.replace(LEADING, "").replace(TRAILING, "");
}

function fail(message: string): never {
  throw new DsnError(message);
}

/** Decodes `%XX` escapes (two hex digits each) into UTF-8 text. */
function percentDecode(variable: string, what: string, text: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(text, "utf8");
  for (let i = 0; i < raw.length; ) {
    if (raw[i] === 0x25) {
      const hex = raw.subarray(i + 1, i + 3).toString("latin1");
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
        fail(`${variable}: the ${what} has a \`%\` that is not followed by two hex digits; write a literal \`%\` as %25`);
      }
      bytes.push(parseInt(hex, 16));
      i += 3;
    } else {
      bytes.push(raw[i]);
      i += 1;
    }
  }
  try {
    // `ignoreBOM`: a decoded U+FEFF stays part of the text, as in Rust.
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(Uint8Array.from(bytes));
  } catch {
    return fail(`${variable}: the ${what} decodes to bytes that are not UTF-8`);
  }
}

function parsePort(variable: string, text: string): number {
  const port = /^\+?[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    fail(`${variable}: the port is not a number between 1 and 65535`);
  }
  return port;
}

function tcpOrSocket(variable: string, host: string): string {
  if (host.startsWith("/")) {
    return host;
  }
  const ipv6 = host.includes(":") && isIPv6(host) && !host.includes("%");
  if ((host.includes(":") && !ipv6) || BAD_HOST.test(host)) {
    fail(`${variable}: the host is not a host name, an IP address or a socket directory`);
  }
  return host;
}

function splitHostPort(variable: string, hostport: string): [string, string | undefined] {
  if (hostport.startsWith("[")) {
    const close = hostport.indexOf("]");
    if (close < 0) {
      fail(`${variable}: an IPv6 host opened with \`[\` is not closed with \`]\``);
    }
    const [host, after] = [hostport.slice(1, close), hostport.slice(close + 1)];
    if (after === "") {
      return [host, undefined];
    }
    if (!after.startsWith(":")) {
      fail(`${variable}: unexpected text after the IPv6 host; write \`[address]:port\``);
    }
    return [host, after.slice(1)];
  }
  const colon = hostport.lastIndexOf(":");
  return colon < 0 ? [hostport, undefined] : [hostport.slice(0, colon), hostport.slice(colon + 1)];
}

/** Reads `text`, the value of `variable`; throws a {@link DsnError}. */
export function parseDsn(variable: string, text: string): Dsn {
  const trimmed = trim(text);
  let rest: string;
  if (trimmed.startsWith("postgresql://")) {
    rest = trimmed.slice("postgresql://".length);
  } else if (trimmed.startsWith("postgres://")) {
    rest = trimmed.slice("postgres://".length);
  } else if (trimmed === "") {
    return fail(`${variable} is empty; set it to a URI like postgresql://user:password@localhost:5432/dbname`);
  } else {
    return fail(`${variable} does not start with \`postgresql://\` or \`postgres://\``);
  }
  if (rest.includes("#")) {
    fail(`${variable} contains \`#\`; percent-encode it as %23 (in a password too)`);
  }
  const authorityEnd = rest.search(/[/?]/u) < 0 ? rest.length : rest.search(/[/?]/u);
  if (rest.slice(authorityEnd).includes("@")) {
    fail(
      `${variable}: an \`@\` follows a \`/\` or \`?\`, so the user name or password holds \`/\`, \`?\` or \`@\` ` +
        "unencoded; percent-encode them (%2F, %3F, %40)",
    );
  }
  const question = rest.indexOf("?");
  const head = question < 0 ? rest : rest.slice(0, question);
  const query = question < 0 ? "" : rest.slice(question + 1);
  const slash = head.indexOf("/");
  const authority = slash < 0 ? head : head.slice(0, slash);
  const path = slash < 0 ? "" : head.slice(slash + 1);

  const dsn: Dsn = {};
  const at = authority.lastIndexOf("@");
  const hostport = at < 0 ? authority : authority.slice(at + 1);
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(":");
    const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (user !== "") {
      dsn.user = percentDecode(variable, "user name", user);
    }
    if (colon >= 0) {
      percentDecode(variable, "password", userinfo.slice(colon + 1));
    }
  }
  if (hostport.includes(",")) {
    fail(`${variable} names several hosts; keep one \`host:port\``);
  }
  const [host, port] = splitHostPort(variable, hostport);
  if (host !== "") {
    dsn.host = tcpOrSocket(variable, percentDecode(variable, "host", host));
  }
  if (port !== undefined) {
    dsn.port = parsePort(variable, port);
  }
  if (path !== "") {
    dsn.dbname = percentDecode(variable, "database name", path);
  }
  for (const pair of query.split("&").filter((p) => p !== "")) {
    const eq = pair.indexOf("=");
    if (eq < 0) {
      fail(`${variable}: a query parameter has no \`=value\``);
    }
    const key = percentDecode(variable, "query parameter name", pair.slice(0, eq));
    if (!SUPPORTED_PARAMS.includes(key)) {
      fail(`${variable}: a query parameter is not supported; remove it (supported: ${SUPPORTED_PARAMS.join(", ")})`);
    }
    const value = percentDecode(variable, `parameter \`${key}\``, pair.slice(eq + 1));
    switch (key) {
      case "host":
        dsn.host = tcpOrSocket(variable, value);
        break;
      case "port":
        dsn.port = parsePort(variable, value);
        break;
      case "user":
        dsn.user = value;
        break;
      case "dbname":
        dsn.dbname = value;
        break;
      case "sslmode":
        if (!SSL_MODES.includes(value as SslMode)) {
          fail(`${variable}: sslmode is not one of ${SSL_MODES.join(", ")}`);
        }
        dsn.sslmode = value as SslMode;
        break;
      case "connect_timeout":
        if (!/^\+?[0-9]+$/.test(value) || BigInt(value) > 18446744073709551615n) {
          fail(`${variable}: connect_timeout is not a whole number of seconds`);
        }
        break;
      default:
        break;
    }
  }
  return dsn;
}

/** Loopback addresses, `localhost` and unix sockets: traffic that never leaves the machine. */
export function isLocal(host: string | undefined): boolean {
  if (host === undefined || host.startsWith("/")) {
    return true;
  }
  const name = host.replace(/^\[/u, "").replace(/\]$/u, "");
  if (name.toLowerCase() === "localhost") {
    return true;
  }
  if (isIPv4(name)) {
    return name.startsWith("127.");
  }
  return isIPv6(name) && !name.includes("%") && ipv6IsLoopback(name);
}

/** `::1`, however it is written. */
function ipv6IsLoopback(address: string): boolean {
  const [head, tail] = address.includes("::") ? address.split("::") : [address, undefined];
  const groups = (text: string) => (text === "" ? [] : text.split(":"));
  if (groups(head).concat(groups(tail ?? "")).some((g) => g.includes("."))) {
    return false; // an embedded IPv4 address (::ffff:127.0.0.1) is not Rust's loopback either
  }
  const left = groups(head);
  const right = groups(tail ?? "");
  const all = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return all.length === 8 && all.slice(0, 7).every((g) => parseInt(g, 16) === 0) && parseInt(all[7], 16) === 1;
}
