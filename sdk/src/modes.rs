//! File modes in the workspace a materializer writes (contract 0.2.1). WASI has no chmod: the host
//! sets the executable bit for the plugin, on regular files below the workspace only.

use crate::bindings::materializer::aac::plugin::modes;

/// Makes the regular file at `path` executable (0o755) or not (0o644). `path` is relative to the
/// workspace directory `materialize` was given (`bin/run.sh`); the host refuses absolute paths,
/// `..`, symbolic links on the path and anything but a regular file, with a message naming it.
pub fn set_executable(path: &str, executable: bool) -> Result<(), String> {
    modes::set_executable(path, executable)
}

/// Whether a Unix mode (a tar header's, say) asks for an executable file: any of the three
/// execute bits. Only this bit survives materialization; setuid, setgid and sticky never do.
pub fn is_executable(mode: u32) -> bool {
    mode & 0o111 != 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_execute_bits_count() {
        assert!(super::is_executable(0o755));
        assert!(super::is_executable(0o100));
        assert!(!super::is_executable(0o644));
        assert!(!super::is_executable(0o4644));
        assert!(!super::is_executable(0o7666));
    }
}
