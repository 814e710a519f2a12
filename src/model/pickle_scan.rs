//! Pickle is data: the globals a `.pth` file's pickle (`ARCHIVE/data.pkl`)
//! would call, read without running anything, and the allow-list a state
//! dict needs (torch's tensor-rebuilding functions, storages, dtypes,
//! `OrderedDict`, plain builtins), as `torch.load(weights_only=True)` has.
//! Anything else (`os.system`, a model class) is refused before candle's
//! unpickler sees the file.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Whether `module.name` is something a state dict's pickle may name.
pub fn allowed(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => name.starts_with("_rebuild_"),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch.nn.parameter" => name == "Parameter",
        "torch.storage" => matches!(name, "UntypedStorage" | "TypedStorage" | "_load_from_bytes"),
        "torch" => {
            name.ends_with("Storage")
                || matches!(name, "Size" | "device" | "dtype" | "Tensor")
                || torch_dtype(name)
        }
        "builtins" | "__builtin__" => matches!(
            name,
            "set"
                | "frozenset"
                | "slice"
                | "int"
                | "float"
                | "bool"
                | "str"
                | "bytes"
                | "bytearray"
                | "complex"
                | "list"
                | "dict"
                | "tuple"
        ),
        "_codecs" => name == "encode",
        _ => false,
    }
}

fn torch_dtype(name: &str) -> bool {
    matches!(
        name,
        "float16"
            | "float32"
            | "float64"
            | "bfloat16"
            | "half"
            | "float"
            | "double"
            | "uint8"
            | "int8"
            | "int16"
            | "int32"
            | "int64"
            | "long"
            | "int"
            | "short"
            | "bool"
            | "complex64"
            | "complex128"
    )
}

/// The first global of `pickle` that is not [`allowed`], as `module.name`;
/// `Err` with a short reason when the stream cannot be walked (truncated,
/// an unknown opcode, a global whose name is computed, objects nested more
/// than [`MAX_DEPTH`] levels, a tree of more than [`MAX_OBJECTS`] objects,
/// more than [`MAX_VALUES`] values on the stack or in the memo).
pub fn first_disallowed(pickle: &[u8]) -> Result<Option<String>, String> {
    let mut i = 0usize;
    // The last two values pushed (strings as Some), for STACK_GLOBAL, and the
    // memo of strings (BINPUT/MEMOIZE), which protocol 4 uses for repeated names.
    let mut last: [Option<String>; 2] = [None, None];
    let mut memo: HashMap<u64, Option<String>> = HashMap::new();
    let mut memo_next = 0u64;
    let need = |i: usize, n: usize| -> Result<(), String> {
        if i.checked_add(n).is_some_and(|e| e <= pickle.len()) {
            Ok(())
        } else {
            Err("truncated pickle".into())
        }
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64);
    let line = |i: usize| -> Result<(&[u8], usize), String> {
        let rest = &pickle[i..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("truncated pickle line")?;
        Ok((&rest[..n], i + n + 1))
    };
    // Only short strings are kept (a module or a name is short), so that
    // memoising a long string many times costs nothing here.
    let push = |last: &mut [Option<String>; 2], v: Option<String>| {
        last[0] = last[1].take();
        last[1] = v.filter(|s| s.len() <= 256);
    };
    let mut depth = Depth::default();
    while i < pickle.len() {
        let op = pickle[i];
        let arg_at = i + 1;
        i += 1;
        // The memo key of a GET/PUT, for the nesting depth below.
        let key = match op {
            b'h' | b'q' => pickle.get(arg_at).map(|&b| b as u64),
            b'j' | b'r' => pickle.get(arg_at..arg_at + 4).map(le),
            b'g' | b'p' => line(arg_at)
                .ok()
                .and_then(|(a, _)| String::from_utf8_lossy(a).trim().parse::<u64>().ok()),
            0x94 => Some(memo_next),
            _ => None,
        };
        depth.apply(op, key)?;
        match op {
            b'.' => return Ok(None),
            // no argument
            b'2' => {
                // DUP
                let top = last[1].clone();
                push(&mut last, top);
            }
            b'(' | b'0' | b'1' | b'N' | 0x88 | 0x89 | b'}' | b']' | b')' | b't' | 0x85 | 0x86
            | 0x87 | b'd' | b'l' | b'a' | b'e' | b's' | b'u' | b'R' | b'b' | b'o' | 0x81 | 0x92
            | 0x8f | 0x90 | 0x91 | b'Q' | 0x97 | 0x98 => {
                if matches!(op, b'0' | b'1' | b'a' | b'e' | b's' | b'u' | b'b' | 0x90) {
                    // Values were popped: what is on top now is not known
                    // here, so a STACK_GLOBAL next is refused as computed.
                    last = [None, None];
                } else if op != b'(' {
                    push(&mut last, None);
                }
            }
            0x94 => {
                // MEMOIZE
                memo.insert(memo_next, last[1].clone());
                memo_next += 1;
            }
            0x93 => {
                // STACK_GLOBAL
                let (m, n) = (last[0].take(), last[1].take());
                match (m, n) {
                    (Some(m), Some(n)) if allowed(&m, &n) => push(&mut last, None),
                    (Some(m), Some(n)) => return Ok(Some(format!("{m}.{n}"))),
                    _ => return Err("a global whose name is computed".into()),
                }
            }
            b'c' | b'i' => {
                // GLOBAL / INST: "module\nname\n"
                let (m, j) = line(i)?;
                let (n, j) = line(j)?;
                let (m, n) = (String::from_utf8_lossy(m), String::from_utf8_lossy(n));
                if !allowed(&m, &n) {
                    return Ok(Some(format!("{m}.{n}")));
                }
                i = j;
                push(&mut last, None);
            }
            // 1, 2, 4, 8 bytes of argument
            b'K' | 0x82 => {
                need(i, 1)?;
                i += 1;
                push(&mut last, None);
            }
            b'h' | b'j' => {
                // BINGET / LONG_BINGET
                let n = if op == b'h' { 1 } else { 4 };
                need(i, n)?;
                let k = le(&pickle[i..i + n]);
                i += n;
                push(&mut last, memo.get(&k).cloned().flatten());
            }
            b'q' | b'r' => {
                // BINPUT / LONG_BINPUT
                let n = if op == b'q' { 1 } else { 4 };
                need(i, n)?;
                memo.insert(le(&pickle[i..i + n]), last[1].clone());
                i += n;
            }
            0x80 => {
                need(i, 1)?;
                i += 1;
            }
            b'M' | 0x83 => {
                need(i, 2)?;
                i += 2;
                push(&mut last, None);
            }
            b'J' | 0x84 => {
                need(i, 4)?;
                i += 4;
                push(&mut last, None);
            }
            b'G' => {
                need(i, 8)?;
                i += 8;
                push(&mut last, None);
            }
            0x95 => {
                // FRAME: its length; the framed opcodes follow
                need(i, 8)?;
                i += 8;
            }
            // length-prefixed data
            b'U' | 0x8c | b'C' | 0x8a | b'T' | b'X' | b'B' | 0x8b | 0x8d | 0x8e | 0x96 => {
                let w = match op {
                    b'U' | 0x8c | b'C' | 0x8a => 1,
                    b'T' | b'X' | b'B' | 0x8b => 4,
                    _ => 8,
                };
                need(i, w)?;
                let n = usize::try_from(le(&pickle[i..i + w])).map_err(|_| "huge length")?;
                if matches!(op, 0x8a | 0x8b) && n > 8 {
                    // No shape, offset or stride of a state dict needs more.
                    return Err("an integer wider than 64 bits".into());
                }
                i += w;
                need(i, n)?;
                let text = matches!(op, 0x8c | b'X' | 0x8d | b'U' | b'T')
                    .then(|| String::from_utf8_lossy(&pickle[i..i + n]).into_owned());
                i += n;
                push(&mut last, text);
            }
            // newline-terminated argument
            b'I' | b'L' | b'F' | b'S' | b'V' | b'P' | b'g' | b'p' => {
                let (arg, j) = line(i)?;
                i = j;
                match op {
                    b'g' => {
                        let k = String::from_utf8_lossy(arg).trim().parse::<u64>().ok();
                        push(&mut last, k.and_then(|k| memo.get(&k).cloned().flatten()));
                    }
                    b'p' => {
                        if let Ok(k) = String::from_utf8_lossy(arg).trim().parse::<u64>() {
                            memo.insert(k, last[1].clone());
                        }
                    }
                    b'S' | b'V' => {
                        let s = String::from_utf8_lossy(arg);
                        push(&mut last, Some(s.trim_matches(['\'', '"']).to_string()));
                    }
                    _ => push(&mut last, None),
                }
            }
            other => return Err(format!("unknown pickle opcode 0x{other:02x}")),
        }
    }
    Err("pickle without STOP".into())
}

/// Objects nested deeper than this are refused: a state dict nests a few
/// levels (a checkpoint dict, the state dict, a tensor's rebuild call, its
/// arguments), and a deeper tree would overflow the stack of any recursive
/// walk, candle's unpickler and Rust's drop of the tree included.
pub const MAX_DEPTH: u32 = 100;

/// The most objects a pickle may build, counting every copy: candle's
/// unpickler copies a memoised object each time it is fetched, so a few
/// hundred bytes of memo fetches can describe an exponentially large tree.
/// A ResNet-152 state dict builds about 10,000 per tensor group; a million
/// per 64 bytes of pickle is far above any real one.
pub const MAX_OBJECTS: u64 = 1 << 24;

/// The most values on the pickle machine's stack or in its memo at once (a
/// state dict needs a few thousand).
pub const MAX_VALUES: usize = 1 << 20;

/// One value of the pickle machine: how deeply it nests and how many
/// objects it is made of (copies included).
#[derive(Clone, Copy)]
struct V {
    depth: u32,
    size: u64,
}

const LEAF: V = V { depth: 1, size: 1 };

/// The nesting depth and size of every value on the pickle machine's stack
/// (`None` for a mark) and in its memo, so that a deep or huge tree is
/// refused before it is built.
#[derive(Default)]
struct Depth {
    stack: Vec<Option<V>>,
    memo: HashMap<u64, V>,
}

impl Depth {
    fn pop(&mut self) -> V {
        self.stack
            .pop()
            .flatten()
            .unwrap_or(V { depth: 0, size: 0 })
    }

    /// Pops to (and including) the last mark; the deepest value popped and
    /// the total size.
    fn pop_mark(&mut self) -> V {
        let mut acc = V { depth: 0, size: 0 };
        while let Some(v) = self.stack.pop() {
            match v {
                Some(v) => acc = join(acc, v),
                None => break,
            }
        }
        acc
    }

    fn push(&mut self, v: V) -> Result<(), String> {
        if v.depth > MAX_DEPTH {
            return Err(format!("objects nested more than {MAX_DEPTH} levels deep"));
        }
        if v.size > MAX_OBJECTS {
            return Err(format!("it would build more than {MAX_OBJECTS} objects"));
        }
        if self.stack.len() >= MAX_VALUES {
            return Err(format!("more than {MAX_VALUES} values on its stack"));
        }
        self.stack.push(Some(v));
        Ok(())
    }

    /// A container of `inner` (one level down).
    fn container(inner: V) -> V {
        V {
            depth: inner.depth.saturating_add(1),
            size: inner.size.saturating_add(1),
        }
    }

    /// Adds `child` (one level down) to the container on top of the stack.
    fn add_to_top(&mut self, child: V) -> Result<(), String> {
        let top = self.pop();
        self.push(V {
            depth: top.depth.max(child.depth.saturating_add(1)),
            size: top.size.saturating_add(child.size),
        })
    }

    fn top(&self) -> V {
        self.stack.last().copied().flatten().unwrap_or(LEAF)
    }

    fn apply(&mut self, op: u8, key: Option<u64>) -> Result<(), String> {
        match op {
            b'(' => {
                if self.stack.len() >= MAX_VALUES {
                    return Err(format!("more than {MAX_VALUES} values on its stack"));
                }
                self.stack.push(None)
            }
            b'0' => {
                self.pop();
            }
            b'1' => {
                self.pop_mark();
            }
            b'2' => {
                let top = self.top();
                self.push(top)?;
            }
            // pop to the mark, push a container of what was popped
            b't' | b'l' | b'd' | 0x91 | b'i' | b'o' => {
                let v = self.pop_mark();
                self.push(Self::container(v))?;
            }
            // pop 1, 2 or 3, push a container of them
            0x85 | b'Q' => {
                let v = self.pop();
                self.push(Self::container(v))?;
            }
            0x86 | b'R' | 0x81 => {
                let v = join(self.pop(), self.pop());
                self.push(Self::container(v))?;
            }
            0x87 | 0x92 => {
                let v = join(join(self.pop(), self.pop()), self.pop());
                self.push(Self::container(v))?;
            }
            // add to the container below
            b'a' | b'b' => {
                let v = self.pop();
                self.add_to_top(v)?;
            }
            b's' => {
                let v = join(self.pop(), self.pop());
                self.add_to_top(v)?;
            }
            b'e' | b'u' | 0x90 => {
                let v = self.pop_mark();
                self.add_to_top(v)?;
            }
            0x93 => {
                self.pop();
                self.pop();
                self.push(LEAF)?;
            }
            // memo: a fetch is a copy of what was stored
            b'h' | b'j' | b'g' => {
                let v = key.and_then(|k| self.memo.get(&k).copied()).unwrap_or(LEAF);
                self.push(v)?;
            }
            b'q' | b'r' | b'p' | 0x94 => {
                if let Some(k) = key {
                    if self.memo.len() >= MAX_VALUES && !self.memo.contains_key(&k) {
                        return Err(format!("more than {MAX_VALUES} memo entries"));
                    }
                    let top = self.top();
                    self.memo.insert(k, top);
                }
            }
            // no stack effect
            0x80 | 0x95 | b'.' | 0x98 => {}
            // everything else pushes one plain value
            _ => self.push(LEAF)?,
        }
        Ok(())
    }
}

/// Two values side by side: the deeper depth, the summed size.
fn join(a: V, b: V) -> V {
    V {
        depth: a.depth.max(b.depth),
        size: a.size.saturating_add(b.size),
    }
}

/// The `*/data.pkl` member of a torch.save zip archive (`None` when the file
/// is not such an archive or has no such member).
pub fn data_pkl(path: &Path) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).ok()?;
    let mut z = zip::ZipArchive::new(std::io::BufReader::new(f)).ok()?;
    let name = z
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n == "data.pkl" || n.ends_with("/data.pkl"))?
        .into_owned();
    let mut e = z.by_name(&name).ok()?;
    // A pickle larger than this is not a state dict's (its tensors live in
    // other members); leave it to the reader, which reports what it finds.
    if e.size() > 256 << 20
        || e.size() > e.compressed_size().saturating_mul(1032).saturating_add(64)
    {
        return None;
    }
    let mut b = Vec::new();
    e.read_to_end(&mut b).ok()?;
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::first_disallowed;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Python's `pickle.dumps(..., protocol=4)`: names by STACK_GLOBAL with
    /// memoised strings; `[OrderedDict(a=1), OrderedDict(b=2)]` passes,
    /// `[OrderedDict(), E()]` with `E.__reduce__ = (os.system, ('true',))`
    /// is refused naming `posix.system`.
    #[test]
    fn protocol_4_stack_global() {
        let ok = hex("80049539000000000000005d94288c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c0161944b017368032952948c0162944b0273652e");
        assert_eq!(first_disallowed(&ok), Ok(None));
        let bad = hex("80049544000000000000005d94288c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c05706f736978948c0673797374656d9493948c04747275659485945294652e");
        assert_eq!(first_disallowed(&bad), Ok(Some("posix.system".into())));
    }

    /// Protocol 2 (what torch.save writes): GLOBAL opcodes, `_codecs.encode`
    /// for bytes; truncation and unknown opcodes are errors, not panics.
    #[test]
    fn protocol_2_globals_and_broken_streams() {
        let ok = hex("800263636f6c6c656374696f6e730a4f726465726564446963740a710029527101285801000000787102635f636f646563730a656e636f64650a710358020000006162710458060000006c6174696e317105867106527107580100000079710847400c00000000000058010000007a71095d710a284b014b0265752e");
        assert_eq!(first_disallowed(&ok), Ok(None));
        for cut in 1..ok.len() - 1 {
            assert!(first_disallowed(&ok[..cut]).is_err(), "cut at {cut}");
        }
        assert!(first_disallowed(&[0x80, 0x02, 0xff]).is_err());
        assert!(first_disallowed(b"\x80\x02X\xff\xff\xff\xff").is_err());
        assert_eq!(
            first_disallowed(b"cos\nsystem\n(S'true'\ntR."),
            Ok(Some("os.system".into()))
        );
    }
}
