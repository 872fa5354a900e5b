fn main() -> std::process::ExitCode {
    aac_host::cli::main()
}
