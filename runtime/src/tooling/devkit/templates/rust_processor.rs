//! {{name}}: a Gleaner processor. It adds the field `greeting` (config key
//! `greeting`, default `hello`) to every event and keeps everything else.
//!
//! Build: `gleaner plugin build` (or `cargo build --release --target
//! wasm32-wasip2`). Test natively: `cargo test`. Test in the real runtime:
//! `gleaner plugin test plugin.wasm --input sample.log --expect expected.ndjson`.

use gleaner_sdk::{Batch, Processor};

/// The plugin's config (the pipeline entry's `config:`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "hello".into()
}

/// The processor.
pub struct Plugin {
    config: Config,
}

impl Processor for Plugin {
    fn init(config: &str) -> Result<Self, String> {
        Ok(Plugin {
            config: gleaner_sdk::parse_config(config)?,
        })
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        let mut out = input.builder();
        let greeting = out.key("greeting");
        for event in input.events() {
            let mut e = out.push_copy(&event);
            e.field_by_key(greeting, &self.config.greeting);
        }
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(Plugin);

#[cfg(test)]
mod tests {
    use gleaner_sdk::testing::{batch_of_lines, records};

    use super::*;

    #[test]
    fn adds_the_greeting_to_every_event() {
        let mut p = Plugin::init(r#"{"greeting":"hi"}"#).unwrap();
        let out = p.process(batch_of_lines(&["a", "b"])).unwrap();
        let r = records(&out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].body, "b");
        assert_eq!(r[1].fields["greeting"], "hi");
        assert!(Plugin::init(r#"{"nope":1}"#).is_err());
    }
}
