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
//! Learnt from the backend's answer and this process's own sockets (the
//! descriptors of `/proc/self/fd`, their `getsockname` and `getpeername`).
//! Anything else (a Unix socket, where the backend sees
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

/// The (local, remote) ends of the connected TCP sockets among this
/// process's file descriptors (`getsockname`, `getpeername`); empty when
/// `/proc/self/fd` cannot be listed. (The kernel's `/proc/net/tcp` lists
/// every socket of the machine and took milliseconds to read.)
fn own_tcp_connections() -> HashSet<(SocketAddr, SocketAddr)> {
    let fds: Vec<libc::c_int> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    fds.into_iter().filter_map(|fd| Some((end_of(fd, libc::getsockname)?, end_of(fd, libc::getpeername)?))).collect()
}

type GetName = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// One end of `fd` when it is a TCP (stream) socket with an IP address.
fn end_of(fd: libc::c_int, get: GetName) -> Option<SocketAddr> {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`, which we own;
    // a descriptor that is no socket (or closed meanwhile) fails.
    let found = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&raw mut kind).cast(), &mut len) };
    if found != 0 || kind != libc::SOCK_STREAM {
        return None;
    }
    // SAFETY: an all-zero sockaddr_storage is valid; `get` writes at most `len` bytes into it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    if unsafe { get(fd, (&raw mut storage).cast(), &mut len) } != 0 {
        return None;
    }
    from_storage(&storage)
}

/// An IPv4 or IPv6 socket address, IPv4-mapped ones as IPv4 (as the server
/// prints them).
fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(v4.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip).to_canonical(), u16::from_be(v6.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_sees_its_own_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let own = own_tcp_connections();
        assert!(own.contains(&(client.local_addr().unwrap(), listener.local_addr().unwrap())), "{own:?}");
    }
}
