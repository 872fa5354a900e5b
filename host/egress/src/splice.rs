//! Moving a tunnel's bytes between two TCP sockets without copying them through the proxy.
//!
//! On Linux each direction goes socket → pipe → socket with `splice(2)`: the kernel hands the
//! received pages on instead of the proxy reading them into a buffer and writing them out again,
//! so a proxied byte is never copied by the proxy: two system calls per up to 1 MiB. Elsewhere (and
//! for the gateway's TLS streams, which are not sockets) [`tokio::io::copy_bidirectional`] does it.

use tokio::net::TcpStream;

/// Copies both ways until both directions have ended; returns (client → upstream, upstream →
/// client) bytes. Like `copy_bidirectional`: the end of one direction shuts the other socket's
/// writing half, and an error in either ends both.
pub async fn both_ways(client: TcpStream, upstream: TcpStream) -> std::io::Result<(u64, u64)> {
    imp::both_ways(client, upstream).await
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Bytes one direction holds in its pipe at most, and moves per call: 1 MiB (Linux's
    /// unprivileged maximum) took the download bench from 0.70× to 0.74× of direct, against 64 KiB
    /// (docs/benchmarks.md, "Egress"). The sockets' own buffers already hold more than this per
    /// connection; a user past its pipe quota keeps the default size.
    const PIPE_BYTES: usize = 1024 * 1024;

    pub async fn both_ways(client: TcpStream, upstream: TcpStream) -> io::Result<(u64, u64)> {
        let (up_pipe, down_pipe) = (Pipe::new()?, Pipe::new()?);
        tokio::try_join!(
            one_way(&client, &upstream, &up_pipe),
            one_way(&upstream, &client, &down_pipe)
        )
    }

    /// `from` → pipe → `to` until `from` ends, then shuts `to`'s writing half.
    async fn one_way(from: &TcpStream, to: &TcpStream, pipe: &Pipe) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
            let mut held = loop {
                from.readable().await?;
                match from.try_io(Interest::READABLE, || {
                    splice(from.as_raw_fd(), pipe.write.as_raw_fd(), PIPE_BYTES)
                }) {
                    Ok(moved) => break moved,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(err) => return Err(err),
                }
            };
            if held == 0 {
                shut_writing(to)?;
                return Ok(total);
            }
            while held > 0 {
                to.writable().await?;
                match to.try_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), to.as_raw_fd(), held)
                }) {
                    // Nothing moved out of a pipe holding bytes: never loop on it.
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(moved) => {
                        held -= moved;
                        total += moved as u64;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(err) => return Err(err),
                }
            }
        }
    }

    fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
        // SAFETY: both descriptors are open for the duration of the call (borrowed from live
        // sockets and pipe ends); null offsets are what sockets and pipes require.
        let moved = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                flags,
            )
        };
        if moved < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(moved as usize)
        }
    }

    fn shut_writing(socket: &TcpStream) -> io::Result<()> {
        // SAFETY: the descriptor belongs to a live socket.
        let done = unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_WR) };
        if done < 0 {
            let err = io::Error::last_os_error();
            // The peer may already be gone: nothing is left to tell it.
            if err.raw_os_error() != Some(libc::ENOTCONN) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// A non-blocking pipe, both ends closed on drop.
    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
        fn new() -> io::Result<Self> {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors pipe2 writes.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both are fresh descriptors this struct now owns.
            let pipe = unsafe {
                Self {
                    read: OwnedFd::from_raw_fd(fds[0]),
                    write: OwnedFd::from_raw_fd(fds[1]),
                }
            };
            // SAFETY: an fcntl on a descriptor this struct owns. A failure keeps the default size.
            unsafe {
                libc::fcntl(
                    pipe.write.as_raw_fd(),
                    libc::F_SETPIPE_SZ,
                    PIPE_BYTES as i32,
                )
            };
            Ok(pipe)
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use tokio::net::TcpStream;

    pub async fn both_ways(
        mut client: TcpStream,
        mut upstream: TcpStream,
    ) -> std::io::Result<(u64, u64)> {
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
    }
}
