//! Every argument and subcommand of the command line says what it is for: a test walks clap's
//! whole command tree and names each one without help text.

use clap::CommandFactory;

/// `aac-host runs create <ARG>`-style names of the arguments and subcommands without help.
fn missing_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            missing.push(format!("{path}: argument {id}"));
        }
    }
    for sub in command.get_subcommands() {
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.get_name() != "help" && sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(format!("{sub_path}: no description"));
        }
        missing_help(sub, &sub_path, missing);
    }
}

#[test]
fn every_argument_and_subcommand_has_help() {
    let command = super::Cli::command();
    command.clone().debug_assert();
    let mut missing = Vec::new();
    missing_help(&command, "aac-host", &mut missing);
    assert!(
        missing.is_empty(),
        "without help text:\n{}",
        missing.join("\n")
    );
}

/// Options that do nothing for a command are not offered by it: the plugin cache only where
/// plugins load.
#[test]
fn cache_options_only_where_plugins_load() {
    let command = super::Cli::command();
    let has = |path: &[&str], long: &str| {
        let mut cmd = &command;
        for name in path {
            cmd = cmd.find_subcommand(name).expect("a subcommand");
        }
        cmd.get_arguments()
            .any(|a| a.get_long() == Some(long) && !a.is_hide_set())
    };
    for path in [
        &["runner"][..],
        &["run"],
        &["config", "check"],
        &["doctor"],
        &["plugin", "inspect"],
        &["plugin", "test"],
    ] {
        assert!(has(path, "cache-dir") && has(path, "no-cache"), "{path:?}");
    }
    for path in [
        &["runs", "create"][..],
        &["runs"],
        &["runners", "list"],
        &["manager"],
        &["completions"],
    ] {
        assert!(
            !has(path, "cache-dir") && !has(path, "no-cache"),
            "{path:?}"
        );
    }
}
