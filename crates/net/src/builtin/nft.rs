//! The built-in default network's NAT: one nf_tables rule per address
//! family for the whole subnet, in a table of skiff's own, instead of the
//! CNI bridge plugin's iptables chain per pod. The rule is the same:
//! traffic from the subnet to anywhere but the subnet and multicast is
//! masqueraded.
//!
//! ```text
//! table ip skiff {
//!   chain default {   # one chain per network, named after it type nat hook postrouting priority srcnat;
//!     ip saddr 172.16.28.0/24 ip daddr != 172.16.28.0/24 ip daddr != 224.0.0.0/4 masquerade } }
//! ```

use std::io;
use std::net::IpAddr;

use super::netlink::{Message, NLM_F_ACK, NLM_F_CREATE, Netlink};
use super::subnet::Subnet;

/// skiff's table (in the `ip` and `ip6` families).
pub const TABLE: &str = "skiff";

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
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

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_POST_ROUTING: u32 = 4;
/// `srcnat`.
const NF_IP_PRI_NAT_SRC: u32 = 100;
const NFT_REG_1: u32 = 1;
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

/// Makes (or remakes) chain `chain` of skiff's table hold exactly the
/// masquerade rule for `subnet`; one atomic batch.
pub fn masquerade(chain: &str, subnet: &Subnet) -> io::Result<()> {
    let family = family_of(subnet);
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
        .be32(NFTA_HOOK_HOOKNUM, NF_INET_POST_ROUTING)
        .be32(NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_SRC)
        .end()
        .str(NFTA_CHAIN_TYPE, "nat");
    let mut flush = Message::new(msg_type(NFT_MSG_DELRULE), NLM_F_ACK, &header);
    flush
        .str(NFTA_RULE_TABLE, TABLE)
        .str(NFTA_RULE_CHAIN, chain);
    let mut rule = Message::new(
        msg_type(NFT_MSG_NEWRULE),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
        &header,
    );
    rule.str(NFTA_RULE_TABLE, TABLE)
        .str(NFTA_RULE_CHAIN, chain)
        .nest(NFTA_RULE_EXPRESSIONS);
    let (saddr, daddr) = match subnet.network {
        IpAddr::V4(_) => (12, 16),
        IpAddr::V6(_) => (8, 24),
    };
    let multicast = match subnet.network {
        IpAddr::V4(_) => Subnet::parse("224.0.0.0/4"),
        IpAddr::V6(_) => Subnet::parse("ff00::/8"),
    }
    .ok_or_else(|| io::Error::other("multicast range"))?;
    match_prefix(&mut rule, saddr, subnet, NFT_CMP_EQ);
    match_prefix(&mut rule, daddr, subnet, NFT_CMP_NEQ);
    match_prefix(&mut rule, daddr, &multicast, NFT_CMP_NEQ);
    rule.nest(NFTA_LIST_ELEM).str(NFTA_EXPR_NAME, "masq").end();
    rule.end();
    batch(&[table, new_chain, flush, rule])
}

/// Removes chain `chain` (the NAT rule of one network) from skiff's table
/// of `subnet`'s family; a chain already gone is not an error. The table
/// stays, empty, for the other networks' chains.
pub fn remove(chain: &str, subnet: &Subnet) -> io::Result<()> {
    let header = nfgen(family_of(subnet), 0);
    let mut flush = Message::new(msg_type(NFT_MSG_DELRULE), NLM_F_ACK, &header);
    flush
        .str(NFTA_RULE_TABLE, TABLE)
        .str(NFTA_RULE_CHAIN, chain);
    let mut delete = Message::new(msg_type(NFT_MSG_DELCHAIN), NLM_F_ACK, &header);
    delete
        .str(NFTA_CHAIN_TABLE, TABLE)
        .str(NFTA_CHAIN_NAME, chain);
    match batch(&[flush, delete]) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}
