//! Renders an [`FrrConfig`] to frr.conf text with the Tera template in `frr-templates/`,
//! embedded at build time, as the running FRR version prints it ([`Dialect`]).
//!
//! The template prints what the model decided. As a last guard against configuration
//! injection, every value that FRR reads as one word goes through the `word` filter and the
//! one free-form `set` clause through `line`; both abort rendering on whitespace or line
//! breaks that the loader should already have refused.

use std::sync::OnceLock;

use tera::{Context, Kwargs, State, Tera};

use super::dialect::Dialect;
use super::model::FrrConfig;

const TEMPLATE_NAME: &str = "frr.conf";
const TEMPLATE: &str = include_str!("../../../frr-templates/frr.conf.tera");

/// Why rendering failed. Only a bug can cause it: the model is checked before it gets here.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template could not be compiled.
    #[error("the frr.conf template does not compile: {0}")]
    Template(String),
    /// Rendering stopped, e.g. on a value that is not one word.
    #[error("cannot render frr.conf: {0}")]
    Render(String),
    /// A name or secret of the configuration cannot go into frr.conf.
    #[error("cannot build frr.conf: {0}")]
    Text(#[from] super::commands::NotFrrText),
}

fn engine() -> Result<&'static Tera, RenderError> {
    static ENGINE: OnceLock<Result<Tera, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut tera = Tera::default();
            tera.autoescape_on(Vec::<&'static str>::new());
            tera.register_filter("word", word);
            tera.register_filter("line", line);
            tera.add_raw_template(TEMPLATE_NAME, TEMPLATE)
                .map_err(|e| describe(&e))?;
            Ok(tera)
        })
        .as_ref()
        .map_err(|e| RenderError::Template(e.clone()))
}

/// Renders the configuration as FRR of `dialect` prints it.
pub fn render(config: &FrrConfig, dialect: Dialect) -> Result<String, RenderError> {
    let tera = engine()?;
    let mut context =
        Context::from_serialize(config).map_err(|e| RenderError::Render(describe(&e)))?;
    context.insert("sections", dialect.sections());
    context.insert("prints_maximum_hops", &dialect.prints_maximum_hops());
    tera.render(TEMPLATE_NAME, &context)
        .map_err(|e| RenderError::Render(describe(&e)))
}

fn describe(e: &tera::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn word(value: &str, _: Kwargs, _: &State) -> tera::TeraResult<String> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(tera::Error::message(format!(
            "{value:?} is not one word and cannot go into frr.conf"
        )));
    }
    Ok(value.to_string())
}

fn line(value: &str, _: Kwargs, _: &State) -> tera::TeraResult<String> {
    if value.chars().any(|c| c.is_control()) {
        return Err(tera::Error::message(format!(
            "{value:?} holds a line break or control character and cannot go into frr.conf"
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frr::commands::Word;
    use crate::frr::model::{FrrConfig, RouteMap};

    #[test]
    fn an_empty_configuration_renders_the_fixed_header() {
        for dialect in Dialect::ALL {
            let text = render(
                &FrrConfig {
                    log_level: "informational".into(),
                    no_ipv4_forwarding: true,
                    ..FrrConfig::default()
                },
                dialect,
            )
            .unwrap();
            assert_eq!(
                text,
                "frr defaults traditional\nlog stdout informational\nlog timestamp precision 3\nno ip forwarding\n!\n"
            );
        }
    }

    #[test]
    fn values_that_are_not_one_word_abort_rendering() {
        let config = FrrConfig {
            log_level: "informational".into(),
            route_maps: vec![RouteMap::deny_all(Word::unchecked("x\nrouter bgp 1"))],
            ..FrrConfig::default()
        };
        let error = render(&config, Dialect::default()).unwrap_err().to_string();
        assert!(error.contains("is not one word"), "{error}");
    }
}
