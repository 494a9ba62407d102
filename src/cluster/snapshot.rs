//! A node's snapshot (every presence member and signed-in user its
//! clients hold) in parts small enough for the bus: no message a node
//! publishes is larger than [`PART_BYTES`] plus one entry, far below what
//! receivers accept ([`super::MAX_BUS_MESSAGE_BYTES`]) and what Redis lets
//! a subscriber fall behind by. Receivers put the parts together and apply
//! the whole, so a member never seems to leave between two parts.

use std::collections::HashMap;

use super::bus::{MemberEntry, Message};

/// The size a part is filled to.
pub const PART_BYTES: usize = 1 << 20;

/// Parts a snapshot has at most (48 MiB, some 240 000 presence
/// memberships on one node); what does not fit is left out, with a warning.
pub const MAX_PARTS: u32 = 48;

/// Nodes whose snapshot is being put together at once, at most.
const MAX_ASSEMBLIES: usize = 64;

/// One part's content.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Piece {
    pub members: Vec<MemberEntry>,
    pub signins: Vec<(String, String)>,
    pub counts: Option<Vec<(String, usize)>>,
}

impl Piece {
    fn into_message(self, part: u32, parts: u32) -> Message {
        Message::Snapshot {
            members: self.members,
            signins: self.signins,
            counts: self.counts,
            part,
            parts,
        }
    }
}

/// A snapshot message as its part number, number of parts and content;
/// `None` for any other message.
pub fn unpack(message: Message) -> Option<(u32, u32, Piece)> {
    match message {
        Message::Snapshot {
            members,
            signins,
            counts,
            part,
            parts,
        } => Some((
            part,
            parts,
            Piece {
                members,
                signins,
                counts,
            },
        )),
        _ => None,
    }
}

/// Bytes an item takes in JSON, near enough for filling parts.
fn json_len(value: &impl serde::Serialize) -> usize {
    serde_json::to_string(value).map_or(0, |text| text.len()) + 1
}

/// Makes room for `size` more bytes in the last piece, starting a new one
/// when it is full; false when no more pieces may be started.
fn make_room(pieces: &mut Vec<Piece>, filled: &mut usize, size: usize) -> bool {
    if *filled + size > PART_BYTES && *filled > 0 {
        if pieces.len() as u32 >= MAX_PARTS {
            return false;
        }
        pieces.push(Piece::default());
        *filled = 0;
    }
    *filled += size;
    true
}

/// The snapshot as bus messages: one when it fits in a part, else parts
/// numbered `0..parts`, counts (if any) in the first. Returns how many
/// members were left out (past [`MAX_PARTS`]).
pub fn split(whole: Piece) -> (Vec<Message>, usize) {
    let mut pieces = vec![Piece {
        counts: whole.counts,
        ..Piece::default()
    }];
    let mut filled = pieces[0].counts.as_ref().map_or(0, json_len);
    let mut left_out = 0;
    for member in whole.members {
        if !make_room(&mut pieces, &mut filled, json_len(&member)) {
            left_out += 1;
        } else if let Some(piece) = pieces.last_mut() {
            piece.members.push(member);
        }
    }
    for signin in whole.signins {
        if make_room(&mut pieces, &mut filled, json_len(&signin))
            && let Some(piece) = pieces.last_mut()
        {
            piece.signins.push(signin);
        }
    }
    let parts = pieces.len() as u32;
    let messages = pieces
        .into_iter()
        .enumerate()
        .map(|(part, piece)| piece.into_message(part as u32, parts))
        .collect();
    (messages, left_out)
}

/// Parts of other nodes' snapshots waiting for the rest.
#[derive(Debug, Default)]
pub struct Assemblies {
    by_node: HashMap<String, Vec<Option<Piece>>>,
}

/// What became of a part.
#[derive(Debug, PartialEq)]
pub enum Assembled {
    /// The whole snapshot, to apply.
    Whole(Piece),
    /// Kept; more parts to come.
    Waiting,
    /// Not a part a node sends (numbers out of range): ignored.
    Refused,
}

impl Assemblies {
    /// Adds part `part` of `parts` from `node`. A first part starts the
    /// node's snapshot afresh (a newer one replaces an unfinished one).
    pub fn add(&mut self, node: &str, part: u32, parts: u32, piece: Piece) -> Assembled {
        if parts <= 1 {
            self.by_node.remove(node);
            return Assembled::Whole(piece);
        }
        if parts > MAX_PARTS || part >= parts {
            return Assembled::Refused;
        }
        if part == 0 {
            if !self.by_node.contains_key(node) && self.by_node.len() >= MAX_ASSEMBLIES {
                return Assembled::Refused;
            }
            self.by_node
                .insert(node.to_owned(), vec![None; parts as usize]);
        }
        let Some(slots) = self.by_node.get_mut(node) else {
            // A part without its first: the snapshot it belongs to began
            // before this node listened; the next one will be whole.
            return Assembled::Waiting;
        };
        if slots.len() != parts as usize {
            self.by_node.remove(node);
            return Assembled::Refused;
        }
        slots[part as usize] = Some(piece);
        if slots.iter().any(Option::is_none) {
            return Assembled::Waiting;
        }
        let mut whole = Piece::default();
        for piece in self.by_node.remove(node).into_iter().flatten().flatten() {
            whole.members.extend(piece.members);
            whole.signins.extend(piece.signins);
            whole.counts = whole.counts.or(piece.counts);
        }
        Assembled::Whole(whole)
    }

    /// Forgets what `node` had sent (it left).
    pub fn forget(&mut self, node: &str) {
        self.by_node.remove(node);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn member(n: usize) -> MemberEntry {
        MemberEntry {
            channel: "presence-big".into(),
            socket: format!("{n}.{n}"),
            user_id: json!(n),
            key: n.to_string(),
            user_info: json!({"name": "x".repeat(150)}),
        }
    }

    #[test]
    fn a_small_snapshot_is_one_message() {
        let (messages, left_out) = split(Piece {
            members: vec![member(1)],
            ..Piece::default()
        });
        assert_eq!((messages.len(), left_out), (1, 0));
        assert_eq!(unpack(messages[0].clone()).unwrap().1, 1);
    }

    #[test]
    fn a_large_snapshot_goes_in_parts_that_fit_and_comes_back_whole() {
        let whole = Piece {
            members: (0..30_000).map(member).collect(),
            signins: (0..1_000)
                .map(|n| (format!("{n}.{n}"), n.to_string()))
                .collect(),
            counts: Some(vec![("presence-big".into(), 30_000)]),
        };
        let (messages, left_out) = split(whole.clone());
        assert_eq!(left_out, 0);
        assert!(messages.len() > 1, "{} part(s)", messages.len());
        for message in &messages {
            let text = serde_json::to_string(message).unwrap();
            assert!(text.len() <= PART_BYTES + 1024, "{} bytes", text.len());
        }
        let mut assemblies = Assemblies::default();
        // Out of order but for the first, as Redis never delivers them; any
        // order after the first is put together all the same.
        let mut parts: Vec<_> = messages.into_iter().filter_map(unpack).collect();
        let first = parts.remove(0);
        assert_eq!(
            assemblies.add("n2", first.0, first.1, first.2),
            Assembled::Waiting
        );
        parts.reverse();
        let last = parts.pop().unwrap();
        for (part, count, piece) in parts {
            assert_eq!(assemblies.add("n2", part, count, piece), Assembled::Waiting);
        }
        let Assembled::Whole(back) = assemblies.add("n2", last.0, last.1, last.2) else {
            panic!("whole");
        };
        assert_eq!(back.members.len(), whole.members.len());
        assert_eq!(back.signins, whole.signins);
        assert_eq!(back.counts, whole.counts);
    }

    #[test]
    fn parts_out_of_range_are_refused() {
        let mut assemblies = Assemblies::default();
        assert_eq!(
            assemblies.add("n2", 0, MAX_PARTS + 1, Piece::default()),
            Assembled::Refused
        );
        assert_eq!(
            assemblies.add("n2", 3, 3, Piece::default()),
            Assembled::Refused
        );
        assert_eq!(
            assemblies.add("n2", 1, 3, Piece::default()),
            Assembled::Waiting
        );
    }
}
