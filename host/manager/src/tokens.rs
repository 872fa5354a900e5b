//! Bearer tokens and their roles: what a token may do on the manager.
//!
//! A token file has one token per line, `role:token`, with `role` one of `runner`, `client` or
//! `admin`; blank lines and lines starting with `#` are skipped. A file of one line without a role
//! prefix is one admin token (the single-token files of earlier versions). Errors name the file's
//! line, never the token on it.

use std::fmt;
use std::path::Path;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Registers, claims, heartbeats, posts events and statuses of the runs it holds.
    Runner,
    /// Creates, enqueues, cancels, deletes and reads runs, their events and results.
    Client,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Runner => "runner",
            Role::Client => "client",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "runner" => Some(Role::Runner),
            "client" => Some(Role::Client),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tokens a manager accepts, each with its role. `Debug` shows the roles only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenSet {
    tokens: Vec<(Role, String)>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tokens.iter().map(|(role, _)| role))
            .finish()
    }
}

/// A token file that cannot be used; names the file and line, never a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("could not read token file {path}: {message}")]
    Read { path: String, message: String },
    #[error("token file {path}, line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("token file {path} has no token (lines `role:token`, role runner, client or admin)")]
    Empty { path: String },
}

/// Longest token accepted (tokens are compared in constant time over their length).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The largest token file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Tokens a file holds at most.
pub const MAX_TOKENS: usize = 1000;

impl TokenSet {
    /// One token with `role`.
    pub fn single(role: Role, token: impl Into<String>) -> Self {
        Self {
            tokens: vec![(role, token.into())],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// How many tokens have `role`.
    pub fn count(&self, role: Role) -> usize {
        self.tokens.iter().filter(|(r, _)| *r == role).count()
    }

    /// Adds a token; an empty one is refused.
    pub fn add(&mut self, role: Role, token: impl Into<String>) -> Result<(), String> {
        let token = token.into();
        check_token(&token)?;
        if let Some((known, _)) = self.tokens.iter().find(|(_, t)| *t == token) {
            if *known != role {
                return Err(format!(
                    "the same token is given with two roles ({known} and {role})"
                ));
            }
            return Ok(());
        }
        self.tokens.push((role, token));
        Ok(())
    }

    /// The role of `presented`, comparing with every token in time independent of where they
    /// differ.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        // No token is longer: a huge header is refused without comparing it with every token.
        if presented.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let mut found = None;
        for (role, token) in &self.tokens {
            if same(presented.as_bytes(), token.as_bytes()) {
                found = Some(*role);
            }
        }
        found
    }

    /// Reads a token file (see the module documentation), at most [`MAX_FILE_BYTES`].
    pub fn read_file(path: &Path) -> Result<Self, TokenFileError> {
        use std::io::Read;
        let shown = path.display().to_string();
        let read_error = |message: String| TokenFileError::Read {
            path: shown.clone(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| read_error(e.to_string()))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(e.to_string()))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(read_error(format!(
                "it is over {MAX_FILE_BYTES} bytes, more than any token file needs"
            )));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| read_error("it is not UTF-8 text".into()))?;
        Self::parse(&text, &shown)
    }

    /// Parses a token file's text; `path` is only for the errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, TokenFileError> {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, line)| (i + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
            .collect();
        let line_error = |line: usize, message: String| TokenFileError::Line {
            path: path.to_owned(),
            line,
            message,
        };
        let has_role = |line: &str| {
            line.split_once(':')
                .is_some_and(|(role, _)| Role::parse(role.trim()).is_some())
        };
        // The single-token file of earlier versions: the whole line is an admin token.
        if let [(number, line)] = lines.as_slice()
            && !has_role(line)
        {
            let mut set = Self::default();
            set.add(Role::Admin, *line)
                .map_err(|m| line_error(*number, m))?;
            return Ok(set);
        }
        let mut set = Self::default();
        for (number, line) in lines {
            let Some((role, token)) = line.split_once(':') else {
                return Err(line_error(
                    number,
                    "expected `role:token` (role runner, client or admin)".into(),
                ));
            };
            let role = Role::parse(role.trim()).ok_or_else(|| {
                line_error(
                    number,
                    format!(
                        "unknown role {:?}: expected runner, client or admin",
                        excerpt(role.trim())
                    ),
                )
            })?;
            set.add(role, token.trim())
                .map_err(|m| line_error(number, m))?;
            if set.len() > MAX_TOKENS {
                return Err(line_error(number, format!("more than {MAX_TOKENS} tokens")));
            }
        }
        if set.is_empty() {
            return Err(TokenFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(set)
    }
}

fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "the token is {} bytes, over {MAX_TOKEN_BYTES}",
            token.len()
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token has a space or control character in it".into());
    }
    Ok(())
}

/// At most 20 characters of what an unknown role was (a mistyped line may hold a token: shown
/// only when short, which a token is not meant to be).
fn excerpt(text: &str) -> String {
    if text.chars().count() > 20 {
        "(a long word)".into()
    } else {
        text.into()
    }
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_tokens_from_lines() {
        let set = TokenSet::parse(
            "# team tokens\nrunner:r-1\nrunner:r-2\n\nclient: c-1\nadmin:a:with:colons\n",
            "t",
        )
        .unwrap();
        assert_eq!(set.len(), 4);
        assert_eq!(set.role_of("r-2"), Some(Role::Runner));
        assert_eq!(set.role_of("c-1"), Some(Role::Client));
        assert_eq!(set.role_of("a:with:colons"), Some(Role::Admin));
        assert_eq!(set.role_of("r-"), None);
        assert_eq!(set.role_of(&"r".repeat(MAX_TOKEN_BYTES + 1)), None);
        assert_eq!(format!("{set:?}"), "[Runner, Runner, Client, Admin]");
    }

    #[test]
    fn a_single_bare_line_is_an_admin_token() {
        let set = TokenSet::parse("\nsecret-token\n", "t").unwrap();
        assert_eq!(set.role_of("secret-token"), Some(Role::Admin));
    }

    #[test]
    fn errors_name_the_line_not_the_token() {
        for (text, line, wanted) in [
            (
                "runner:ok\nsuperuser:hunter2-secret\n",
                2,
                "unknown role \"superuser\"",
            ),
            ("runner:ok\nhunter2-secret\n", 2, "expected `role:token`"),
            ("client:\nrunner:ok", 1, "the token is empty"),
            (
                "client:hunter2-secret\nrunner:hunter2-secret",
                2,
                "two roles",
            ),
            ("runner:hunter2 secret\nclient:x", 1, "space"),
        ] {
            let err = TokenSet::parse(text, "tokens.txt").unwrap_err().to_string();
            assert!(
                err.contains(&format!("tokens.txt, line {line}:")) && err.contains(wanted),
                "{text:?}: {err}"
            );
            assert!(!err.contains("hunter2"), "a token leaked: {err}");
        }
        let err = TokenSet::parse("# nothing\n", "tokens.txt").unwrap_err();
        assert!(err.to_string().contains("has no token"), "{err}");
    }

    #[test]
    fn files_are_read_bounded_and_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let err = TokenSet::read_file(&big).unwrap_err().to_string();
        assert!(
            err.contains("over 1048576 bytes") && err.contains("big"),
            "{err}"
        );
        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"runner:\xff\xfe").unwrap();
        let err = TokenSet::read_file(&binary).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        let missing = TokenSet::read_file(&dir.path().join("missing")).unwrap_err();
        assert!(
            missing.to_string().contains("could not read token file"),
            "{missing}"
        );
    }
}
