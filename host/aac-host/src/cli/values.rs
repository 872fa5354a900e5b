//! Parsers of flag values, with the same rules as `aac.toml`: a flag can never remove a limit, and a
//! bad value is a usage error (exit 2) naming the flag and what was wrong.

use std::path::PathBuf;

use crate::config::MIN_MEMORY_BYTES;

/// `--cpus`: a number greater than 0 (fractions allowed).
pub fn cpus(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        Ok(value) => Err(format!(
            "CPUs must be a number greater than 0, not {value} (a flag never removes the limit)"
        )),
        Err(_) => Err(format!("`{text}` is not a number of CPUs, e.g. 2 or 0.5")),
    }
}

/// `--memory-mib`: whole MiB, at least Docker's minimum of 6 MiB.
pub fn memory_mib(text: &str) -> Result<u64, String> {
    let min = MIN_MEMORY_BYTES >> 20;
    match text.trim().parse::<u64>() {
        Ok(mib) if mib >= min && mib.checked_mul(1 << 20).is_some() => Ok(mib),
        Ok(mib) if mib < min => Err(format!(
            "{mib} MiB is below {min} MiB, Docker's minimum (a flag never removes the limit)"
        )),
        Ok(mib) => Err(format!("{mib} MiB is more memory than a machine can have")),
        Err(_) => Err(format!("`{text}` is not a whole number of MiB, e.g. 2048")),
    }
}

/// `--pids`: a process limit greater than 0.
pub fn pids(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(value) if value > 0 => Ok(value),
        Ok(value) => Err(format!(
            "the process limit must be greater than 0, not {value} (a flag never removes the limit)"
        )),
        Err(_) => Err(format!(
            "`{text}` is not a whole number of processes, e.g. 512"
        )),
    }
}

/// A directory given on the command line: made absolute against the current directory (Docker
/// would take a relative path for a volume name), and refused when it exists but is not a directory.
pub fn directory(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the path is empty".into());
    }
    let path = std::path::absolute(text).map_err(|err| {
        format!("could not resolve `{text}` against the current directory: {err}")
    })?;
    if path.exists() && !path.is_dir() {
        return Err(format!("{} exists and is not a directory", path.display()));
    }
    Ok(path)
}

/// `--label` / `--require`: `KEY=VALUE`, a non-empty key of at most 128 characters.
pub fn label(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("`{text}` is not KEY=VALUE, e.g. gpu=a100"));
    };
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() {
        return Err(format!("`{text}` has an empty key"));
    }
    let max = crate::manager::store::MAX_LABEL_CHARS;
    if key.chars().count() > max || value.chars().count() > max {
        return Err(format!(
            "`{text}`: keys and values are at most {max} characters"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Longest prompt read from stdin (`-`): the manager takes at most 2 MiB per request.
pub const MAX_STDIN_PROMPT_BYTES: u64 = 1 << 20;

/// A prompt of `-` is read from stdin (one trailing newline dropped); any other text is itself.
pub fn prompt(text: String) -> anyhow::Result<String> {
    use std::io::Read;
    if text != "-" {
        return Ok(text);
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN_PROMPT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| anyhow::anyhow!("could not read the prompt from stdin: {err}"))?;
    if bytes.len() as u64 > MAX_STDIN_PROMPT_BYTES {
        anyhow::bail!("the prompt on stdin is over {MAX_STDIN_PROMPT_BYTES} bytes (1 MiB)");
    }
    let mut text = String::from_utf8(bytes)
        .map_err(|err| anyhow::anyhow!("the prompt on stdin is not UTF-8: {err}"))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.trim().is_empty() {
        anyhow::bail!("the prompt on stdin (`-`) is empty");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_never_removed_and_nonsense_is_named() {
        assert_eq!(cpus("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "lots"] {
            assert!(cpus(bad).is_err(), "{bad}");
        }
        assert_eq!(memory_mib("6"), Ok(6));
        assert!(memory_mib("0").unwrap_err().contains("below 6 MiB"));
        assert!(memory_mib("4").unwrap_err().contains("Docker's minimum"));
        assert!(memory_mib("99999999999999999").is_err());
        assert!(memory_mib("2GiB").unwrap_err().contains("`2GiB`"));
        assert_eq!(pids("1"), Ok(1));
        assert!(pids("0").is_err());
        assert!(pids("-5").is_err());
    }

    #[test]
    fn directories_are_made_absolute_and_files_refused() {
        let resolved = directory("some/relative/ws").unwrap();
        assert!(resolved.is_absolute());
        assert!(resolved.ends_with("some/relative/ws"));
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = directory(file.path().to_str().unwrap()).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        assert!(directory("").is_err());
    }
}
