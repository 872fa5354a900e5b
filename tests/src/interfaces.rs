//! The addresses of this machine's network interfaces (getifaddrs), to find Docker's bridge.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr};

/// The first IPv4 address of the interface `name`, if it exists and has one.
pub fn ipv4_address(name: &str) -> Option<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we only read and then free once.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut entry = list;
    while !entry.is_null() && found.is_none() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string; ifa_addr points at a sockaddr whose family
        // says its real type.
        let (entry_name, family) =
            unsafe { (CStr::from_ptr(ifa.ifa_name), (*ifa.ifa_addr).sa_family) };
        if entry_name.to_bytes() != name.as_bytes() || i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let addr = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        found = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
            addr.sin_addr.s_addr,
        ))));
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}
