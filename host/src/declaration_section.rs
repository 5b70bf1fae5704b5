//! Reads the capability declaration a component carries in its
//! `wcp-capabilities` custom section, without instantiating it.

use anyhow::{Context, Result, bail};
use wasmparser::{Parser, Payload};
use wcp_core::capabilities::{Declaration, SECTION_NAME};

/// The component's declaration; a component without one declares nothing
/// and so can use nothing.
pub fn declaration(bytes: &[u8]) -> Result<Declaration> {
    parse(section(bytes)?.as_deref())
}

/// The declaration in a component's section (see [`section`]).
pub fn parse(section: Option<&[u8]>) -> Result<Declaration> {
    match section {
        Some(data) => Declaration::parse(data).context("invalid capability declaration"),
        None => Ok(Declaration::default()),
    }
}

/// The raw `wcp-capabilities` custom section, searched at every nesting
/// level (the SDK's section sits in the component's core module). More than
/// one distinct copy is refused: which one counts would be ambiguous.
pub fn section(bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut found: Option<Vec<u8>> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CustomSection(reader) = payload.context("cannot parse the component")?
            && reader.name() == SECTION_NAME
        {
            match &found {
                Some(existing) if existing.as_slice() != reader.data() => {
                    bail!("component carries more than one different {SECTION_NAME} section")
                }
                _ => found = Some(reader.data().to_vec()),
            }
        }
    }
    Ok(found)
}
