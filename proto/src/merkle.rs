//! The hash tree an origin signs a batch of its messages with: one
//! signature over the root vouches for every message, and each message
//! carries the sibling hashes from its leaf to the root (an inclusion
//! proof), so it can be checked alone wherever it travels.
//!
//! The tree and the proof are RFC 9162's (Certificate Transparency 2.0,
//! section 2.1): a leaf hash is SHA-256(0x00 ‖ leaf bytes), an interior
//! hash SHA-256(0x01 ‖ left ‖ right), and a tree of `n` leaves splits at
//! the largest power of two below `n`. The distinct prefixes keep a leaf
//! from passing for an interior node and the reverse. A well-studied
//! construction rather than a home-made one; the code is short enough to
//! keep here rather than add a crate for it.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf's, an interior node's or the root's.
pub(crate) type Hash = [u8; 32];

/// The hash of a leaf whose bytes are `parts`, concatenated.
pub(crate) fn leaf_hash(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The hash of an interior node.
fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the tree over `leaves` (at least one), and each leaf's
/// inclusion proof: its siblings' hashes, lowest first.
pub(crate) fn build(leaves: &[Hash]) -> (Hash, Vec<Vec<Hash>>) {
    let mut paths = vec![Vec::new(); leaves.len()];
    let root = subtree(leaves, &mut paths);
    (root, paths)
}

/// The root of the subtree over `leaves`; appends to each of `paths` (one
/// per leaf) the siblings met on the way up to that root.
fn subtree(leaves: &[Hash], paths: &mut [Vec<Hash>]) -> Hash {
    match leaves {
        [] => leaf_hash(&[]),
        [leaf] => *leaf,
        _ => {
            let split = largest_power_of_two_below(leaves.len());
            let (left_leaves, right_leaves) = leaves.split_at(split);
            let (left_paths, right_paths) = paths.split_at_mut(split);
            let left = subtree(left_leaves, left_paths);
            let right = subtree(right_leaves, right_paths);
            left_paths.iter_mut().for_each(|path| path.push(right));
            right_paths.iter_mut().for_each(|path| path.push(left));
            node_hash(&left, &right)
        }
    }
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root a leaf at `index` of a tree of `count` leaves implies with
/// `path` (RFC 9162, 2.1.3.2); `None` when the path cannot belong to such a
/// tree (an index out of range, a path too short or too long).
pub(crate) fn root_from_path(index: u32, count: u32, leaf: Hash, path: &[Hash]) -> Option<Hash> {
    if index >= count {
        return None;
    }
    let mut position = index;
    let mut last = count - 1;
    let mut hash = leaf;
    for sibling in path {
        if last == 0 {
            return None;
        }
        if position & 1 == 1 || position == last {
            hash = node_hash(sibling, &hash);
            // The last node of a level without a right sibling moves up
            // unchanged until it is a right child.
            if position & 1 == 0 {
                while position & 1 == 0 && position != 0 {
                    position >>= 1;
                    last >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        position >>= 1;
        last >>= 1;
    }
    (last == 0).then_some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&[&(i as u64).to_be_bytes()]))
            .collect()
    }

    /// The tree by RFC 9162's recursive definition, to check `build`.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves {
            [leaf] => *leaf,
            _ => {
                let k = largest_power_of_two_below(leaves.len());
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn every_leaf_of_every_size_proves_its_inclusion() {
        for n in 1..=70 {
            let leaves = leaves(n);
            let (root, paths) = build(&leaves);
            assert_eq!(root, reference_root(&leaves), "n={n}");
            let count = n as u32;
            for (i, (leaf, path)) in leaves.iter().zip(&paths).enumerate() {
                let index = i as u32;
                assert_eq!(
                    root_from_path(index, count, *leaf, path),
                    Some(root),
                    "n={n} i={i}"
                );
            }
        }
    }

    #[test]
    fn a_proof_holds_only_for_its_leaf_index_and_size() {
        let leaves = leaves(13);
        let (root, paths) = build(&leaves);
        let path = &paths[5];
        // Another leaf, another position, a tree size of another shape.
        // (Sizes of the same shape around the leaf, 12 or 14 here, imply
        // the same root: the signed statement names the size, so a proof
        // is only ever checked against the size the origin signed.)
        assert_ne!(root_from_path(5, 13, leaves[6], path), Some(root));
        assert_ne!(root_from_path(4, 13, leaves[5], path), Some(root));
        assert_ne!(root_from_path(5, 6, leaves[5], path), Some(root));
        assert_ne!(root_from_path(5, 7, leaves[5], path), Some(root));
        assert_ne!(root_from_path(5, 40, leaves[5], path), Some(root));
        // A sibling altered, dropped, or one too many.
        let mut altered = path.clone();
        altered[1][0] ^= 1;
        assert_ne!(root_from_path(5, 13, leaves[5], &altered), Some(root));
        assert_eq!(root_from_path(5, 13, leaves[5], &path[1..]), None);
        let mut longer = path.clone();
        longer.push([0; 32]);
        assert_eq!(root_from_path(5, 13, leaves[5], &longer), None);
        // An index outside the tree.
        assert_eq!(root_from_path(13, 13, leaves[5], path), None);
        assert_eq!(root_from_path(0, 0, leaves[0], &[]), None);
    }

    #[test]
    fn an_interior_node_does_not_pass_for_a_leaf() {
        // The two leaves under the root, hashed as an interior node, are
        // the root; presented as a leaf of a one-leaf tree, the proof of a
        // "leaf" made of the two hashes must not give that root.
        let leaves = leaves(2);
        let (root, _) = build(&leaves);
        let forged_leaf = leaf_hash(&[&leaves[0], &leaves[1]]);
        assert_ne!(root_from_path(0, 1, forged_leaf, &[]), Some(root));
    }
}
