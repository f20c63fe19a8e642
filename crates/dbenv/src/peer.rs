//! Whether a session's server backend talks to this very process: the
//! address and port at which the backend sees its client
//! (`inet_client_addr()`, `inet_client_port()`) are the local end of a TCP
//! socket this process holds, and that socket's far end is where the
//! backend listens (`inet_server_addr()`, `inet_server_port()`). Then
//! nothing stands between the two: a pooler's backends see the pooler's
//! own sockets, which no socket of ours matches, so no pool can share or
//! move the session and the behavioural watch of [`crate::pooling`] (a
//! second session, a login and eight round trips) is not needed.
//!
//! Learnt from the backend's answer and the kernel's socket table
//! (`/proc/self/net/tcp{,6}`, limited to the sockets among this process's
//! file descriptors). Anything else (a Unix socket, where the backend sees
//! no address; a system without `/proc`; NAT between us and the server)
//! answers "not shown", and the watch runs as before. It assumes no device
//! between us and the server forges our source address and port toward it
//! (a transparent proxy, `usesrc client`): a pooler doing that would be
//! taken for a direct connection.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Result;
use postgres::Client;

/// Whether `client`'s backend is shown to talk to this process's own
/// socket (one round trip). The session sets nothing: every name is
/// qualified.
pub fn talks_to_us(client: &mut Client) -> Result<bool> {
    // The simple protocol: no named statement is left on a backend that a
    // pool may share.
    let sql = "SELECT pg_catalog.host(pg_catalog.inet_client_addr()), pg_catalog.inet_client_port(), \
                      pg_catalog.host(pg_catalog.inet_server_addr()), pg_catalog.inet_server_port()";
    let row: Vec<Option<String>> = client
        .simple_query(sql)?
        .into_iter()
        .find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => Some((0..4).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .unwrap_or_else(|| vec![None; 4]);
    let end = |addr: &Option<String>, port: &Option<String>| -> Option<SocketAddr> {
        let ip: IpAddr = addr.as_deref()?.parse().ok()?;
        Some(SocketAddr::new(ip.to_canonical(), port.as_deref()?.parse().ok()?))
    };
    let (Some(client_end), Some(server_end)) = (end(&row[0], &row[1]), end(&row[2], &row[3])) else {
        return Ok(false);
    };
    Ok(own_tcp_connections().contains(&(client_end, server_end)))
}

/// The (local, remote) ends of the established TCP connections among this
/// process's file descriptors; empty when `/proc` says nothing.
fn own_tcp_connections() -> HashSet<(SocketAddr, SocketAddr)> {
    let inodes: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| table.lines().skip(1).filter_map(parse_line).collect::<Vec<_>>())
        .filter(|(_, _, inode)| inodes.contains(inode))
        .map(|(local, remote, _)| (local, remote))
        .collect()
}

/// One established connection of the kernel's table: local, remote, inode.
fn parse_line(line: &str) -> Option<(SocketAddr, SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    if fields.len() < 10 || fields[3] != "01" {
        return None;
    }
    Some((parse_end(fields[1])?, parse_end(fields[2])?, fields[9].parse().ok()?))
}

/// `0100007F:1538` (IPv4) or 32 hex digits and a port (IPv6): the kernel
/// prints each 32-bit word of the address as a number in host byte order.
fn parse_end(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<[u8; 4]> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes))
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [v4] => IpAddr::V4(Ipv4Addr::from(*v4)),
        [a, b, c, d] => {
            let bytes: Vec<u8> = [a, b, c, d].iter().flat_map(|w| w.iter().copied()).collect();
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_table_reads_as_addresses() {
        let line = "   3: 0100007F:1538 0100007F:D5A2 01 00000000:00000000 00:00000000 00000000   112        0 4242 1";
        let (local, remote, inode) = parse_line(line).unwrap();
        assert_eq!(local, "127.0.0.1:5432".parse().unwrap());
        assert_eq!(remote, "127.0.0.1:54690".parse().unwrap());
        assert_eq!(inode, 4242);
        // Listening (0A), not established: not a connection.
        assert!(parse_line(&line.replace(" 01 ", " 0A ")).is_none());
        let v6 = "0: 00000000000000000000000001000000:1538 0000000000000000FFFF00000100007F:D5A2 01 0:0 0:0 0 0 0 7 1";
        let (local, remote, _) = parse_line(v6).unwrap();
        assert_eq!(local, "[::1]:5432".parse().unwrap());
        // An IPv4-mapped address is its IPv4 address, as the server prints it.
        assert_eq!(remote, "127.0.0.1:54690".parse().unwrap());
        assert!(parse_end("zz:1").is_none() && parse_end("0100007F").is_none());
    }

    #[test]
    fn this_process_sees_its_own_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let own = own_tcp_connections();
        assert!(own.contains(&(client.local_addr().unwrap(), listener.local_addr().unwrap())), "{own:?}");
    }
}
