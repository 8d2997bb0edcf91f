//! `weft fault set|clear|list`: the operator's side of `weft_kit::faults`.

use anyhow::bail;
use weft_kit::faults;

use crate::cli::FaultCommand;

/// Runs one `weft fault` command.
pub fn run(cmd: FaultCommand) -> anyhow::Result<()> {
    match cmd {
        FaultCommand::Set { flags, data_dir } => {
            let mut now = faults::read(&data_dir);
            for flag in &flags {
                let Some((name, value)) = flag.split_once('=') else {
                    bail!("{flag:?} is not name=value");
                };
                if let Some(problem) = faults::problem(name.trim(), value.trim()) {
                    bail!("{problem}");
                }
                now.insert(name.trim().to_owned(), value.trim().to_owned());
            }
            faults::write(&data_dir, &now)?;
            print(&now);
        }
        FaultCommand::Clear { names, data_dir } => {
            let mut now = faults::read(&data_dir);
            if names.is_empty() {
                now.clear();
            }
            for name in &names {
                if now.remove(name).is_none() {
                    bail!("{name} is not on");
                }
            }
            faults::write(&data_dir, &now)?;
            print(&now);
        }
        FaultCommand::List { data_dir } => {
            print(&faults::read(&data_dir));
            println!("faults there are:");
            for (name, takes, does) in faults::FLAGS {
                println!("  {name}=<{takes}>  {does}");
            }
        }
    }
    Ok(())
}

fn print(flags: &std::collections::BTreeMap<String, String>) {
    if flags.is_empty() {
        println!("no fault flags on");
    }
    for (name, value) in flags {
        println!("on: {name}={value}");
    }
}
