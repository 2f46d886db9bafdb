//! The built-in networks' netfilter rules, in a table of skiff's own
//! (`ip skiff`, `ip6 skiff`), one chain per network named after it:
//!
//! * `default`'s NAT — one rule for the whole subnet instead of the CNI
//!   bridge plugin's iptables chain per pod, matching what that chain
//!   matched (from the subnet to anywhere but the subnet and multicast),
//!   and only for packets that came in over the network's own bridge:
//!
//!   ```text
//!   table ip skiff {
//!     chain default { type nat hook postrouting priority srcnat;
//!       iifname "skiff0" ip saddr 172.16.28.0/24 ip daddr != 172.16.28.0/24 ip daddr != 224.0.0.0/4 masquerade } }
//!   ```
//!
//! * `default-restricted`'s isolation — nothing is forwarded to or from its
//!   bridge (pods reach the host's own address and each other, which is
//!   not forwarding), whatever routes or raw frames a pod makes:
//!
//!   ```text
//!   chain default-restricted { type filter hook forward priority filter;
//!     iifname "skiff1" drop
//!     oifname "skiff1" drop }
//!   ```
//!
//! A chain is rewritten whole, atomically, whenever a pod is added (so a
//! bridge renumbered since holds the right subnet), and stays, like the
//! bridge, when the last pod goes: deleting a base chain waits for an RCU
//! grace period, which every one-off pod would pay.

use std::io;
use std::net::IpAddr;

use super::netlink::{Message, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, Netlink, attributes};
use super::subnet::Subnet;

/// skiff's table (in the `ip` and `ip6` families).
pub const TABLE: &str = "skiff";

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NLM_F_APPEND: u16 = 0x800;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
/// `srcnat`.
const NF_IP_PRI_NAT_SRC: u32 = 100;
/// `filter`.
const NF_IP_PRI_FILTER: u32 = 0;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NF_DROP: u32 = 0;
/// `IFNAMSIZ`: interface names are compared as 16 bytes.
const IFNAMSIZ: usize = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;

fn msg_type(kind: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | kind
}

/// `struct nfgenmsg`.
fn nfgen(family: u8, res_id: u16) -> [u8; 4] {
    let id = res_id.to_be_bytes();
    [family, 0, id[0], id[1]]
}

fn family_of(subnet: &Subnet) -> u8 {
    match subnet.network {
        IpAddr::V4(_) => NFPROTO_IPV4,
        IpAddr::V6(_) => NFPROTO_IPV6,
    }
}

/// Loads the input (`key` NFT_META_IIFNAME) or output interface's name
/// into register 1 and compares it with `name`.
fn match_interface(m: &mut Message, key: u32, name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return Err(io::Error::other(format!("bad interface name {name:?}")));
    }
    let mut padded = [0u8; IFNAMSIZ];
    padded[..name.len()].copy_from_slice(name.as_bytes());
    expr(m, "meta", |m| {
        m.be32(NFTA_META_DREG, NFT_REG_1).be32(NFTA_META_KEY, key);
    });
    expr(m, "cmp", |m| {
        m.be32(NFTA_CMP_SREG, NFT_REG_1)
            .be32(NFTA_CMP_OP, NFT_CMP_EQ);
        m.nest(NFTA_CMP_DATA).attr(NFTA_DATA_VALUE, &padded).end();
    });
    Ok(())
}

/// A rule of `chain` whose expressions `body` writes, with `comment`
/// (what `nft list` shows, and how skiff knows its rules).
fn rule(
    header: &[u8],
    chain: &str,
    comment: &str,
    body: impl FnOnce(&mut Message) -> io::Result<()>,
) -> io::Result<Message> {
    let mut rule = Message::new(
        msg_type(NFT_MSG_NEWRULE),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
        header,
    );
    rule.str(NFTA_RULE_TABLE, TABLE)
        .str(NFTA_RULE_CHAIN, chain)
        .nest(NFTA_RULE_EXPRESSIONS);
    body(&mut rule)?;
    rule.end().attr(NFTA_RULE_USERDATA, &user_data(comment)?);
    Ok(rule)
}

/// A rule's user data holding `comment` as nft writes it (a TLV of type 0,
/// `NFTNL_UDATA_RULE_COMMENT`, with the terminating NUL).
fn user_data(comment: &str) -> io::Result<Vec<u8>> {
    let len =
        u8::try_from(comment.len() + 1).map_err(|_| io::Error::other("rule comment too long"))?;
    let mut data = vec![0, len];
    data.extend_from_slice(comment.as_bytes());
    data.push(0);
    Ok(data)
}

/// The user data of every rule of `chain` in skiff's table of `family`
/// (none when the chain does not exist).
fn rules_of(family: u8, chain: &str) -> io::Result<Vec<Vec<u8>>> {
    let mut get = Message::new(msg_type(NFT_MSG_GETRULE), NLM_F_DUMP, &nfgen(family, 0));
    get.str(NFTA_RULE_TABLE, TABLE).str(NFTA_RULE_CHAIN, chain);
    let replies = match Netlink::netfilter()?.request(&get) {
        Ok(replies) => replies,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut chain_name = chain.as_bytes().to_vec();
    chain_name.push(0);
    Ok(replies
        .iter()
        .filter(|r| r.kind == msg_type(NFT_MSG_NEWRULE))
        .map(|r| attributes(&r.payload, 4))
        .filter(|attrs| {
            attrs
                .iter()
                .any(|(k, v)| *k == NFTA_RULE_CHAIN && *v == chain_name)
        })
        .map(|attrs| {
            attrs
                .iter()
                .find(|(k, _)| *k == NFTA_RULE_USERDATA)
                .map(|(_, v)| v.to_vec())
                .unwrap_or_default()
        })
        .collect())
}

/// Makes (or remakes) base chain `chain` of skiff's table of `family`
/// (`kind` "nat" or "filter" on `hook` at `priority`) hold exactly
/// `rules`: one atomic batch.
fn replace_chain(
    family: u8,
    chain: &str,
    (kind, hook, priority): (&str, u32, u32),
    rules: Vec<(String, Message)>,
) -> io::Result<()> {
    // Already so (the usual case: a chain stays with its bridge): nothing
    // to write. Rewriting would delete the old rule, and the socket's
    // close would then wait for an RCU grace period (12-17 ms here).
    let wanted = rules
        .iter()
        .map(|(comment, _)| user_data(comment))
        .collect::<io::Result<Vec<_>>>()?;
    if rules_of(family, chain)? == wanted {
        return Ok(());
    }
    let rules: Vec<Message> = rules.into_iter().map(|(_, m)| m).collect();
    let header = nfgen(family, 0);
    let mut table = Message::new(
        msg_type(NFT_MSG_NEWTABLE),
        NLM_F_ACK | NLM_F_CREATE,
        &header,
    );
    table.str(NFTA_TABLE_NAME, TABLE);
    let mut new_chain = Message::new(
        msg_type(NFT_MSG_NEWCHAIN),
        NLM_F_ACK | NLM_F_CREATE,
        &header,
    );
    new_chain
        .str(NFTA_CHAIN_TABLE, TABLE)
        .str(NFTA_CHAIN_NAME, chain)
        .nest(NFTA_CHAIN_HOOK)
        .be32(NFTA_HOOK_HOOKNUM, hook)
        .be32(NFTA_HOOK_PRIORITY, priority)
        .end()
        .str(NFTA_CHAIN_TYPE, kind);
    let mut flush = Message::new(msg_type(NFT_MSG_DELRULE), NLM_F_ACK, &header);
    flush
        .str(NFTA_RULE_TABLE, TABLE)
        .str(NFTA_RULE_CHAIN, chain);
    let mut all = vec![table, new_chain, flush];
    all.extend(rules);
    batch(&all)
}

fn batch(messages: &[Message]) -> io::Result<()> {
    let begin = Message::new(NFNL_MSG_BATCH_BEGIN, 0, &nfgen(0, NFNL_SUBSYS_NFTABLES));
    let end = Message::new(NFNL_MSG_BATCH_END, 0, &nfgen(0, NFNL_SUBSYS_NFTABLES));
    let mut all = vec![&begin];
    all.extend(messages);
    all.push(&end);
    Netlink::netfilter()?.exchange(&all).map(drop)
}

/// Appends one expression `name` with its data attributes written by `data`.
fn expr(m: &mut Message, name: &str, data: impl FnOnce(&mut Message)) {
    m.nest(NFTA_LIST_ELEM).str(NFTA_EXPR_NAME, name);
    m.nest(NFTA_EXPR_DATA);
    data(m);
    m.end().end();
}

/// Loads the network header's `len` bytes at `offset` into register 1,
/// masks them to `subnet`'s prefix and compares them with its network.
fn match_prefix(m: &mut Message, offset: u32, subnet: &Subnet, op: u32) {
    let (network, mask) = (subnet.network_bytes(), subnet.mask_bytes());
    let len = network.len() as u32;
    expr(m, "payload", |m| {
        m.be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
            .be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER)
            .be32(NFTA_PAYLOAD_OFFSET, offset)
            .be32(NFTA_PAYLOAD_LEN, len);
    });
    expr(m, "bitwise", |m| {
        m.be32(NFTA_BITWISE_SREG, NFT_REG_1)
            .be32(NFTA_BITWISE_DREG, NFT_REG_1)
            .be32(NFTA_BITWISE_LEN, len);
        m.nest(NFTA_BITWISE_MASK).attr(NFTA_DATA_VALUE, &mask).end();
        m.nest(NFTA_BITWISE_XOR)
            .attr(NFTA_DATA_VALUE, &vec![0; mask.len()])
            .end();
    });
    expr(m, "cmp", |m| {
        m.be32(NFTA_CMP_SREG, NFT_REG_1).be32(NFTA_CMP_OP, op);
        m.nest(NFTA_CMP_DATA).attr(NFTA_DATA_VALUE, &network).end();
    });
}

/// Makes chain `chain` hold exactly the masquerade rule for `subnet`,
/// for packets that came in over `bridge`.
pub fn masquerade(chain: &str, bridge: &str, subnet: &Subnet) -> io::Result<()> {
    let family = family_of(subnet);
    let (saddr, daddr) = match subnet.network {
        IpAddr::V4(_) => (12, 16),
        IpAddr::V6(_) => (8, 24),
    };
    let multicast = match subnet.network {
        IpAddr::V4(_) => Subnet::parse("224.0.0.0/4"),
        IpAddr::V6(_) => Subnet::parse("ff00::/8"),
    }
    .ok_or_else(|| io::Error::other("multicast range"))?;
    let comment = format!("skiff: NAT of network {chain} ({subnet} on {bridge})");
    let nat = rule(&nfgen(family, 0), chain, &comment, |m| {
        match_interface(m, NFT_META_IIFNAME, bridge)?;
        match_prefix(m, saddr, subnet, NFT_CMP_EQ);
        match_prefix(m, daddr, subnet, NFT_CMP_NEQ);
        match_prefix(m, daddr, &multicast, NFT_CMP_NEQ);
        m.nest(NFTA_LIST_ELEM).str(NFTA_EXPR_NAME, "masq").end();
        Ok(())
    })?;
    replace_chain(
        family,
        chain,
        ("nat", NF_INET_POST_ROUTING, NF_IP_PRI_NAT_SRC),
        vec![(comment, nat)],
    )
}

/// Makes chain `chain` drop everything forwarded from or to `bridge`
/// (IPv4 and IPv6).
pub fn isolate(chain: &str, bridge: &str) -> io::Result<()> {
    for family in [NFPROTO_IPV4, NFPROTO_IPV6] {
        let header = nfgen(family, 0);
        let drop = |key, way: &str| {
            let comment = format!("skiff: network {chain} forwards nothing {way} {bridge}");
            let message = rule(&header, chain, &comment, |m| {
                match_interface(m, key, bridge)?;
                expr(m, "immediate", |m| {
                    m.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                    m.nest(NFTA_IMMEDIATE_DATA)
                        .nest(NFTA_DATA_VERDICT)
                        .be32(NFTA_VERDICT_CODE, NF_DROP)
                        .end()
                        .end();
                });
                Ok(())
            })?;
            Ok::<_, io::Error>((comment, message))
        };
        let rules = vec![
            drop(NFT_META_IIFNAME, "from")?,
            drop(NFT_META_OIFNAME, "to")?,
        ];
        replace_chain(
            family,
            chain,
            ("filter", NF_INET_FORWARD, NF_IP_PRI_FILTER),
            rules,
        )?;
    }
    Ok(())
}
