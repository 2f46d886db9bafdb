//! Interfaces through the classic socket ioctls (the syscall boundary of
//! this crate): flags (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`), IPv4 addresses
//! (`SIOCSIFADDR`/`SIOCSIFNETMASK`) and the default route (`SIOCADDRT`).
//! `sock` is any AF_INET socket in the network namespace to change.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// An ifreq naming `name` (shorter than IFNAMSIZ).
fn request(name: &str) -> std::io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// An IPv4 socket address as the generic `sockaddr` ioctls take.
fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and
    // sockaddr is plain old data.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl<T>(sock: BorrowedFd<'_>, request: libc::Ioctl, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: a valid socket fd and a request whose argument type is `T`
    // (every caller passes the struct its request number takes).
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, arg as *mut T) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives interface `name` the IPv4 address `addr`/`prefix`.
pub fn set_ipv4(
    sock: BorrowedFd<'_>,
    name: &str,
    addr: Ipv4Addr,
    prefix: u8,
) -> std::io::Result<()> {
    if prefix > 32 {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut req = request(name)?;
    req.ifr_ifru.ifru_addr = sockaddr(addr);
    ioctl(sock, libc::SIOCSIFADDR, &mut req)?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let mut req = request(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    ioctl(sock, libc::SIOCSIFNETMASK, &mut req)
}

/// Adds the default route via `gateway`.
pub fn add_default_route(sock: BorrowedFd<'_>, gateway: Ipv4Addr) -> std::io::Result<()> {
    // SAFETY: rtentry is plain old data; all-zero is a valid value.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    ioctl(sock, libc::SIOCADDRT, &mut route)
}

/// Sets IFF_UP on interface `name` (shorter than IFNAMSIZ).
pub fn set_up(sock: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    let mut req = request(name)?;
    ioctl(sock, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    ioctl(sock, libc::SIOCSIFFLAGS, &mut req)
}
