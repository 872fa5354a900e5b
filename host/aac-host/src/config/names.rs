//! What names, versions, environment variables and users may look like.

/// Runtime names: letters, digits, `.`, `_` and `-`, starting with a letter or digit.
pub(super) fn is_runtime_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Version names: not empty, no `@` (it separates a selector's runtime and version), spaces or
/// control characters.
pub(super) fn is_version(version: &str) -> bool {
    !version.is_empty()
        && !version
            .chars()
            .any(|c| c == '@' || c.is_whitespace() || c.is_control())
}

/// Portable environment variable names: a letter or `_`, then letters, digits and `_`.
pub(super) fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn invalid_env_name(name: &str) -> String {
    format!(
        "invalid environment variable name {name:?} (letters, digits and '_', not starting with a digit)"
    )
}

/// `uid:gid`, `uid`, `name` or `name:group`, and never root.
pub(super) fn check_user(user: &str) -> Result<(), String> {
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let valid = |part: &str| {
        let numeric = !part.is_empty()
            && part.chars().all(|c| c.is_ascii_digit())
            && part.parse::<u32>().is_ok();
        let name = part.len() <= 32
            && part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        numeric || name
    };
    if !valid(uid) || gid.is_some_and(|gid| !valid(gid)) {
        return Err(format!(
            "invalid user {user:?} (expected uid:gid such as \"1000:1000\", a uid, or a user name)"
        ));
    }
    if uid == "root" || uid.parse::<u32>() == Ok(0) {
        return Err(format!(
            "user {user:?} is root: sandboxes never run as root (use a non-root uid:gid such as \"1000:1000\")"
        ));
    }
    Ok(())
}
