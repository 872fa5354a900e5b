//! The server name a TLS ClientHello asks for (RFC 8446 §4.1.2, RFC 6066 §3), read from the first
//! bytes a client sends through a CONNECT tunnel, so a tunnel to an allowed name cannot carry TLS
//! to another one on the same address.

/// What the first bytes of a tunnel say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// Not a TLS handshake record (plain protocol, or not enough bytes yet to tell).
    NotTls,
    /// A TLS handshake whose first record is not complete in `bytes` yet.
    Incomplete,
    /// A complete ClientHello, with the server name when it carries one.
    Tls(Option<String>),
}

/// A TLS record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// The largest record a client may send.
pub const MAX_RECORD: usize = RECORD_HEADER + (1 << 14) + 2048;

pub fn parse(bytes: &[u8]) -> Hello {
    if bytes.is_empty() || bytes[0] != 0x16 {
        return Hello::NotTls;
    }
    if bytes.len() < RECORD_HEADER {
        return Hello::Incomplete;
    }
    let length = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    let Some(record) = bytes.get(RECORD_HEADER..RECORD_HEADER + length) else {
        return Hello::Incomplete;
    };
    Hello::Tls(server_name(record))
}

/// The `host_name` of the server_name extension of the handshake message in `record`.
fn server_name(record: &[u8]) -> Option<String> {
    let mut r = Reader(record);
    if r.u8()? != 0x01 {
        return None;
    }
    let length = r.u24()?;
    let body = r.take(length)?;
    let mut r = Reader(body);
    r.take(2 + 32)?; // version, random
    let session = usize::from(r.u8()?);
    r.take(session)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let compression = usize::from(r.u8()?);
    r.take(compression)?;
    let extensions = r.u16()?;
    let mut r = Reader(r.take(extensions)?);
    while !r.0.is_empty() {
        let kind = r.u16()?;
        let length = r.u16()?;
        let data = r.take(length)?;
        if kind != 0 {
            continue;
        }
        let mut names = Reader(data);
        let list = names.u16()?;
        let mut names = Reader(names.take(list)?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let length = names.u16()?;
            let name = names.take(length)?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().map(str::to_owned);
            }
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ClientHello record naming `name`.
    pub(crate) fn client_hello(name: &str) -> Vec<u8> {
        let mut sni = Vec::new();
        let entry_len = 3 + name.len();
        sni.extend((entry_len as u16).to_be_bytes());
        sni.push(0);
        sni.extend((name.len() as u16).to_be_bytes());
        sni.extend(name.as_bytes());
        let mut extensions = vec![0, 0];
        extensions.extend((sni.len() as u16).to_be_bytes());
        extensions.extend(sni);
        let mut body = vec![3, 3];
        body.extend([0u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        body.extend((extensions.len() as u16).to_be_bytes());
        body.extend(extensions);
        let mut handshake = vec![1];
        handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![0x16, 3, 1];
        record.extend((handshake.len() as u16).to_be_bytes());
        record.extend(handshake);
        record
    }

    #[test]
    fn reads_the_server_name_of_a_client_hello() {
        let hello = client_hello("api.openai.com");
        assert_eq!(parse(&hello), Hello::Tls(Some("api.openai.com".into())));
        assert_eq!(parse(&hello[..hello.len() - 1]), Hello::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]), Hello::Tls(None));
    }
}
