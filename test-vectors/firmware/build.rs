//! Put `memory.x` on the linker search path (cortex-m-rt's `link.x` includes
//! it), and turn one MLS passive-client vector into Rust constants.
//!
//! The MLS run (`src/mls.rs`) embeds entry [`MLS_ENTRY`] of the mlswg
//! `passive-client-handling-commit.json` (ciphersuite 3). This script runs on
//! the host: it reads the JSON with a small parser (no dependencies), decodes
//! the hex fields the run needs and writes them as byte-string constants to
//! `$OUT_DIR/mls_vector.rs`, which `src/mls.rs` includes. Nothing generated
//! is committed; the binary data ends up in `.rodata` (flash).

#[path = "memory_x.rs"]
mod memory_x;

use std::fmt::Write as _;
use std::{env, fs, path::PathBuf};

/// The vector file, relative to this directory.
const MLS_VECTOR: &str = "../mls/passive-client-handling-commit.json";
/// The entry embedded: a 1,859-byte Welcome (its GroupInfo carries the
/// ratchet tree, 8 members; one external PSK is provisioned), then 2 epochs:
/// a 1,061-byte commit with an UpdatePath, then an Add proposal and a
/// 220-byte commit that lists it by reference.
const MLS_ENTRY: usize = 6;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    if !memory_x::put_memory_x(&out) {
        return;
    }
    println!("cargo::rerun-if-changed=memory_x.rs");
    println!("cargo::rerun-if-changed={MLS_VECTOR}");
    match mls_vector() {
        Ok(code) => {
            if let Err(e) = fs::write(out.join("mls_vector.rs"), code) {
                println!("cargo::error=cannot write mls_vector.rs: {e}");
            }
        }
        Err(e) => println!("cargo::error={MLS_VECTOR}: {e}"),
    }
}

/// A JSON value (numbers kept as text: only `cipher_suite` is read).
enum Json {
    Null,
    Bool,
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Result<&Json, String> {
        match self {
            Json::Obj(fields) => {
                fields.iter().find(|(k, _)| k == key).map(|(_, v)| v).ok_or(format!("no field {key}"))
            }
            _ => Err(format!("{key}: not an object")),
        }
    }
    fn arr(&self) -> Result<&[Json], String> {
        match self {
            Json::Arr(a) => Ok(a),
            Json::Null => Ok(&[]),
            _ => Err("not an array".into()),
        }
    }
    fn hex(&self) -> Result<Vec<u8>, String> {
        let Json::Str(s) = self else { return Err("not a string".into()) };
        if s.len() % 2 != 0 {
            return Err("odd hex length".into());
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or(""), 16).map_err(|e| e.to_string()))
            .collect()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s.get(self.i..self.i + word.len()) == Some(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(format!("bad literal at byte {}", self.i))
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'"' => {
                    let raw = self.s.get(start..self.i).unwrap_or_default();
                    let text = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
                    self.i += 1;
                    return Ok(text.to_string());
                }
                b'\\' => return Err(format!("escape in string at byte {} (not needed here)", self.i)),
                _ => self.i += 1,
            }
        }
        Err("unterminated string".into())
    }
    fn value(&mut self) -> Result<Json, String> {
        match self.peek().ok_or("unexpected end")? {
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    let k = self.string()?;
                    self.expect(b':')?;
                    fields.push((k, self.value()?));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("bad object at byte {}", self.i)),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("bad array at byte {}", self.i)),
                    }
                }
            }
            b'"' => Ok(Json::Str(self.string()?)),
            b'n' => self.literal("null", Json::Null),
            b't' => self.literal("true", Json::Bool),
            b'f' => self.literal("false", Json::Bool),
            _ => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|c| c.is_ascii_digit() || b"-+.eE".contains(c)) {
                    self.i += 1;
                }
                if start == self.i {
                    return Err(format!("unexpected byte at {}", self.i));
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(self.s.get(start..self.i).unwrap_or_default()).into_owned(),
                ))
            }
        }
    }
}

fn bytes_const(code: &mut String, name: &str, bytes: &[u8]) {
    let _ = writeln!(code, "pub const {name}: &[u8] = &{bytes:?};");
}

fn key_const(code: &mut String, name: &str, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() != 32 {
        return Err(format!("{name}: {} bytes, not 32", bytes.len()));
    }
    let _ = writeln!(code, "pub const {name}: [u8; 32] = {bytes:?};");
    Ok(())
}

/// The Rust source of the embedded vector entry.
fn mls_vector() -> Result<String, String> {
    let text = fs::read(MLS_VECTOR).map_err(|e| e.to_string())?;
    let mut p = Parser { s: &text, i: 0 };
    let all = p.value()?;
    let e = all.arr()?.get(MLS_ENTRY).ok_or("no such entry")?;
    match e.get("cipher_suite")? {
        Json::Num(n) if n == "3" => {}
        _ => return Err("entry is not ciphersuite 3".into()),
    }
    let mut code =
        String::from("// Generated by build.rs from the mlswg passive-client vector; do not edit.\n");
    let _ = writeln!(code, "pub const FILE: &str = \"passive-client-handling-commit.json\";");
    let _ = writeln!(code, "pub const ENTRY: usize = {MLS_ENTRY};");
    bytes_const(&mut code, "KEY_PACKAGE", &e.get("key_package")?.hex()?);
    bytes_const(&mut code, "WELCOME", &e.get("welcome")?.hex()?);
    match e.get("ratchet_tree")? {
        Json::Null => code.push_str("pub const RATCHET_TREE: Option<&[u8]> = None;\n"),
        t => {
            let _ = writeln!(code, "pub const RATCHET_TREE: Option<&[u8]> = Some(&{:?});", t.hex()?);
        }
    }
    key_const(&mut code, "INIT_PRIV", &e.get("init_priv")?.hex()?)?;
    key_const(&mut code, "ENCRYPTION_PRIV", &e.get("encryption_priv")?.hex()?)?;
    key_const(&mut code, "SIGNATURE_PRIV", &e.get("signature_priv")?.hex()?)?;
    key_const(&mut code, "INITIAL_EPOCH_AUTHENTICATOR", &e.get("initial_epoch_authenticator")?.hex()?)?;
    code.push_str("pub const EXTERNAL_PSKS: &[ExternalPsk<'static>] = &[\n");
    for psk in e.get("external_psks")?.arr()? {
        let (id, psk) = (psk.get("psk_id")?.hex()?, psk.get("psk")?.hex()?);
        let _ = writeln!(code, "    ExternalPsk {{ id: &{id:?}, psk: &{psk:?} }},");
    }
    code.push_str("];\n");
    code.push_str("pub const EPOCHS: &[Epoch] = &[\n");
    for epoch in e.get("epochs")?.arr()? {
        code.push_str("    Epoch {\n        proposals: &[\n");
        for prop in epoch.get("proposals")?.arr()? {
            let _ = writeln!(code, "            &{:?},", prop.hex()?);
        }
        code.push_str("        ],\n");
        let _ = writeln!(code, "        commit: &{:?},", epoch.get("commit")?.hex()?);
        let auth = epoch.get("epoch_authenticator")?.hex()?;
        if auth.len() != 32 {
            return Err("epoch_authenticator: not 32 bytes".into());
        }
        let _ = writeln!(code, "        epoch_authenticator: {auth:?},\n    }},");
    }
    code.push_str("];\n");
    Ok(code)
}
