//! Entry paths: relative, without `..`, normalized; links judged by where they resolve.

/// `./a//b/` → `a/b`. Absolute paths, `..`, empty paths and NUL are refused.
pub fn normalize(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') || raw.starts_with('\\') {
        return Err("an absolute path is not allowed in a bundle".into());
    }
    if raw.contains('\0') || raw.contains('\\') {
        return Err("the path contains a NUL or a backslash".into());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("a path with `..` is not allowed in a bundle".into()),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(parts.join("/"))
}

/// Whether a symlink at `link` with `target` resolves inside the bundle root (lexically; absolute
/// targets never do).
pub fn link_stays_inside(link: &str, target: &str) -> bool {
    if target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth = link.split('/').count() - 1;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// Every proper ancestor of `path`: `a/b/c` → `a`, `a/b`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}
