//! VPC flow log files: a header line naming the fields, then one space-separated row per flow,
//! `-` for absent values. Most flow logs use the default version-2 format; some use a custom
//! version-5 field list in a different order, so a reader must go by the header.
//!
//! Rows come from what each network interface does: web servers take traffic (and scans) from the
//! internet, application servers talk to databases, the resolver and AWS APIs, NAT gateways
//! forward outbound traffic. A few rows are `NODATA`/`SKIPDATA`, some are IPv6 or ICMP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::emit::push_u64;
use super::plan::{WINDOW_SECS, Window};
use super::world::{AWS_OCTETS, Eni, EniRole, Vpc, World, pick, public_ip};

/// The flow log fields bunker's generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Version,
    AccountId,
    InterfaceId,
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    VpcId,
    SubnetId,
    InstanceId,
    TcpFlags,
    Type,
    PktSrcAddr,
    PktDstAddr,
    Region,
    AzId,
    SublocationType,
    SublocationId,
    PktSrcAwsService,
    PktDstAwsService,
    FlowDirection,
    TrafficPath,
}

impl Field {
    /// The name in the header line.
    const fn name(self) -> &'static str {
        match self {
            Field::Version => "version",
            Field::AccountId => "account-id",
            Field::InterfaceId => "interface-id",
            Field::SrcAddr => "srcaddr",
            Field::DstAddr => "dstaddr",
            Field::SrcPort => "srcport",
            Field::DstPort => "dstport",
            Field::Protocol => "protocol",
            Field::Packets => "packets",
            Field::Bytes => "bytes",
            Field::Start => "start",
            Field::End => "end",
            Field::Action => "action",
            Field::LogStatus => "log-status",
            Field::VpcId => "vpc-id",
            Field::SubnetId => "subnet-id",
            Field::InstanceId => "instance-id",
            Field::TcpFlags => "tcp-flags",
            Field::Type => "type",
            Field::PktSrcAddr => "pkt-srcaddr",
            Field::PktDstAddr => "pkt-dstaddr",
            Field::Region => "region",
            Field::AzId => "az-id",
            Field::SublocationType => "sublocation-type",
            Field::SublocationId => "sublocation-id",
            Field::PktSrcAwsService => "pkt-src-aws-service",
            Field::PktDstAwsService => "pkt-dst-aws-service",
            Field::FlowDirection => "flow-direction",
            Field::TrafficPath => "traffic-path",
        }
    }
}

/// The default format (version 2).
const DEFAULT_FORMAT: &[Field] = &[
    Field::Version,
    Field::AccountId,
    Field::InterfaceId,
    Field::SrcAddr,
    Field::DstAddr,
    Field::SrcPort,
    Field::DstPort,
    Field::Protocol,
    Field::Packets,
    Field::Bytes,
    Field::Start,
    Field::End,
    Field::Action,
    Field::LogStatus,
];

/// A custom format with version-3 to -5 fields, in the order a team picked rather than AWS's.
const CUSTOM_FORMAT: &[Field] = &[
    Field::Version,
    Field::VpcId,
    Field::SubnetId,
    Field::InstanceId,
    Field::InterfaceId,
    Field::AccountId,
    Field::Type,
    Field::SrcAddr,
    Field::DstAddr,
    Field::SrcPort,
    Field::DstPort,
    Field::PktSrcAddr,
    Field::PktDstAddr,
    Field::Protocol,
    Field::Bytes,
    Field::Packets,
    Field::Start,
    Field::End,
    Field::Action,
    Field::TcpFlags,
    Field::LogStatus,
    Field::Region,
    Field::AzId,
    Field::SublocationType,
    Field::SublocationId,
    Field::PktSrcAwsService,
    Field::PktDstAwsService,
    Field::FlowDirection,
    Field::TrafficPath,
];

/// One row's values.
struct Flow<'a> {
    eni: &'a Eni,
    /// `OK`, `NODATA` or `SKIPDATA`; the traffic fields are absent unless `OK`.
    status: &'static str,
    src: IpAddr,
    dst: IpAddr,
    /// Original addresses, where a NAT gateway translated them.
    pkt_src: IpAddr,
    pkt_dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    packets: u64,
    bytes: u64,
    start: i64,
    end: i64,
    accept: bool,
    tcp_flags: u8,
    ingress: bool,
    traffic_path: Option<u8>,
    src_service: Option<&'static str>,
    dst_service: Option<&'static str>,
}

/// Writes one flow log file for `window`; returns the number of rows (header excluded).
pub(crate) fn write(out: &mut Vec<u8>, rng: &mut ChaCha8Rng, world: &World, window: &Window) -> u64 {
    let account = &world.accounts[window.account];
    let vpc = &account.vpcs[window.place];
    let region = &world.regions[vpc.region].name;
    let format = if vpc.custom_format { CUSTOM_FORMAT } else { DEFAULT_FORMAT };
    let version: u64 = if vpc.custom_format { 5 } else { 2 };
    for (i, field) in format.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(field.name().as_bytes());
    }
    out.push(b'\n');
    // Rows are stamped with the start of their capture; none may spill past midnight, so every row
    // is on the date in the key.
    let day_end = window.start - window.start.rem_euclid(86_400) + 86_399;
    let mut rows: Vec<Flow<'_>> =
        (0..window.records).map(|_| flow(rng, vpc, window.start, day_end, world.benign)).collect();
    rows.sort_by_key(|f| f.start);
    out.reserve(rows.len() * if vpc.custom_format { 260 } else { 110 });
    for row in &rows {
        for (i, &field) in format.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            write_value(out, field, row, version, &account.id, vpc, region);
        }
        out.push(b'\n');
    }
    window.records
}

fn write_value(out: &mut Vec<u8>, field: Field, f: &Flow<'_>, version: u64, account: &str, vpc: &Vpc, region: &str) {
    let ok = f.status == "OK";
    let ip = |out: &mut Vec<u8>, addr: IpAddr| out.extend_from_slice(addr.to_string().as_bytes());
    let dash = |out: &mut Vec<u8>| out.push(b'-');
    match field {
        Field::Version => push_u64(out, version),
        Field::AccountId => out.extend_from_slice(account.as_bytes()),
        Field::InterfaceId => out.extend_from_slice(f.eni.id.as_bytes()),
        Field::Start => push_u64(out, f.start as u64),
        Field::End => push_u64(out, f.end as u64),
        Field::LogStatus => out.extend_from_slice(f.status.as_bytes()),
        Field::VpcId => out.extend_from_slice(vpc.id.as_bytes()),
        Field::SubnetId => out.extend_from_slice(vpc.subnets[f.eni.subnet].id.as_bytes()),
        Field::InstanceId => match &f.eni.instance {
            Some(id) => out.extend_from_slice(id.as_bytes()),
            None => dash(out),
        },
        Field::Region => out.extend_from_slice(region.as_bytes()),
        Field::AzId => out.extend_from_slice(vpc.subnets[f.eni.subnet].az_id.as_bytes()),
        Field::SublocationType | Field::SublocationId => dash(out),
        _ if !ok => dash(out),
        Field::SrcAddr => ip(out, f.src),
        Field::DstAddr => ip(out, f.dst),
        Field::PktSrcAddr => ip(out, f.pkt_src),
        Field::PktDstAddr => ip(out, f.pkt_dst),
        Field::SrcPort => push_u64(out, u64::from(f.src_port)),
        Field::DstPort => push_u64(out, u64::from(f.dst_port)),
        Field::Protocol => push_u64(out, u64::from(f.protocol)),
        Field::Packets => push_u64(out, f.packets),
        Field::Bytes => push_u64(out, f.bytes),
        Field::Action => out.extend_from_slice(if f.accept { b"ACCEPT" } else { b"REJECT" }),
        Field::TcpFlags => push_u64(out, u64::from(f.tcp_flags)),
        Field::Type => out.extend_from_slice(if f.src.is_ipv6() { b"IPv6" } else { b"IPv4" }),
        Field::PktSrcAwsService => out.extend_from_slice(f.src_service.unwrap_or("-").as_bytes()),
        Field::PktDstAwsService => out.extend_from_slice(f.dst_service.unwrap_or("-").as_bytes()),
        Field::FlowDirection => out.extend_from_slice(if f.ingress { b"ingress" } else { b"egress" }),
        Field::TrafficPath => match f.traffic_path {
            Some(path) => push_u64(out, u64::from(path)),
            None => dash(out),
        },
    }
}

const SCAN_PORTS: [u16; 8] = [22, 23, 445, 3389, 5900, 8080, 3306, 6379];
const DB_PORTS: [u16; 3] = [5432, 3306, 6379];
/// Ports whose acceptance from the internet `aws-vpcflow-admin-port-accepted-from-internet` flags.
const ADMIN_PORTS: [u16; 2] = [22, 3389];
/// Largest flow of a benign background (at most 140 MB): eight of them to one address in one hour
/// would be needed to reach the gigabyte of `aws-vpcflow-large-egress`, and destinations are drawn
/// from millions of addresses.
const BENIGN_MAX_PACKETS: u64 = 100_000;

fn ephemeral(rng: &mut ChaCha8Rng) -> u16 {
    rng.random_range(32768..61000)
}

fn internet_v6(rng: &mut ChaCha8Rng) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        *pick(rng, &[0x2a00u16, 0x2001, 0x2606, 0x2803]),
        rng.random(),
        rng.random(),
        0,
        0,
        0,
        0,
        rng.random(),
    ))
}

/// One row for an interface of `vpc`; a `benign` one is nothing a built-in rule flags.
fn flow<'a>(rng: &mut ChaCha8Rng, vpc: &'a Vpc, window_start: i64, day_end: i64, benign: bool) -> Flow<'a> {
    // Public-facing interfaces (the first three) carry more flows than their share.
    let eni =
        if rng.random_bool(0.3) { &vpc.enis[rng.random_range(0..3.min(vpc.enis.len()))] } else { pick(rng, &vpc.enis) };
    let start = (window_start + rng.random_range(0..WINDOW_SECS)).min(day_end);
    let end = (start + rng.random_range(0..60)).min(day_end);
    let me = IpAddr::V4(eni.ip);
    let mut f = Flow {
        eni,
        status: "OK",
        src: me,
        dst: me,
        pkt_src: me,
        pkt_dst: me,
        src_port: 0,
        dst_port: 0,
        protocol: 6,
        packets: 0,
        bytes: 0,
        start,
        end,
        accept: true,
        tcp_flags: 0,
        ingress: false,
        traffic_path: None,
        src_service: None,
        dst_service: None,
    };
    let status_roll: f64 = rng.random();
    if status_roll < 0.01 {
        f.status = "NODATA";
        return f;
    } else if status_roll < 0.012 {
        f.status = "SKIPDATA";
        return f;
    }
    let peer_in_vpc = |rng: &mut ChaCha8Rng, role: EniRole| {
        let candidates: Vec<&Eni> = vpc.enis.iter().filter(|e| e.role == role).collect();
        if candidates.is_empty() { IpAddr::V4(vpc.enis[0].ip) } else { IpAddr::V4(pick(rng, &candidates).ip) }
    };
    let aws_ip = |rng: &mut ChaCha8Rng| IpAddr::V4(public_ip(rng, &AWS_OCTETS));
    let roll: f64 = rng.random();
    match eni.role {
        EniRole::Web if roll < 0.5 => {
            // A client on the internet reaching the site.
            f.ingress = true;
            f.src = IpAddr::V4(public_ip(rng, &[24, 73, 81, 98, 176, 203]));
            f.src_port = ephemeral(rng);
            f.dst_port = if rng.random_bool(0.85) { 443 } else { 80 };
            f.tcp_flags = *pick(rng, &[2, 3, 19, 18]);
        }
        EniRole::Web | EniRole::NatGateway if roll < 0.75 => {
            // Internet background radiation: scans, mostly rejected by security groups.
            f.ingress = true;
            f.src = IpAddr::V4(public_ip(rng, &[45, 89, 141, 162, 185, 193, 194]));
            f.src_port = ephemeral(rng);
            f.dst_port = *pick(rng, &SCAN_PORTS);
            // In a benign background, security groups never let SSH or RDP in from the internet.
            f.accept = rng.random_bool(0.1) && !(benign && ADMIN_PORTS.contains(&f.dst_port));
            f.tcp_flags = 2;
            f.packets = 1;
        }
        EniRole::Web => {
            // The reply side of a client connection.
            f.src_port = 443;
            f.dst = IpAddr::V4(public_ip(rng, &[24, 73, 81, 98, 176, 203]));
            f.dst_port = ephemeral(rng);
            f.tcp_flags = 19;
            f.traffic_path = Some(8);
        }
        EniRole::NatGateway => {
            // Outbound through the NAT gateway: the packet's original source is a private host.
            f.dst = aws_ip(rng);
            f.dst_port = 443;
            f.src_port = ephemeral(rng);
            f.pkt_src = peer_in_vpc(rng, EniRole::App);
            f.dst_service = Some(*pick(rng, &["AMAZON", "S3", "EC2"]));
            f.tcp_flags = 19;
            f.traffic_path = Some(8);
        }
        EniRole::App | EniRole::Lambda if roll < 0.4 => {
            // AWS API calls and package downloads.
            f.dst = aws_ip(rng);
            f.dst_port = 443;
            f.src_port = ephemeral(rng);
            f.dst_service = Some(*pick(rng, &["AMAZON", "S3", "DYNAMODB"]));
            f.tcp_flags = 19;
            f.traffic_path = Some(if rng.random_bool(0.3) { 7 } else { 1 });
        }
        EniRole::App if roll < 0.65 => {
            f.dst = peer_in_vpc(rng, EniRole::Database);
            f.dst_port = *pick(rng, &DB_PORTS);
            f.src_port = ephemeral(rng);
            f.tcp_flags = 3;
            f.traffic_path = Some(1);
        }
        EniRole::App | EniRole::Lambda if roll < 0.85 => {
            // Queries to the VPC resolver at the base of the CIDR plus two.
            f.dst = IpAddr::V4(Ipv4Addr::new(10, vpc.octet, 0, 2));
            f.dst_port = 53;
            f.src_port = ephemeral(rng);
            f.protocol = 17;
            f.traffic_path = Some(1);
        }
        EniRole::App | EniRole::Lambda => {
            f.ingress = true;
            f.src = peer_in_vpc(rng, EniRole::Web);
            f.src_port = ephemeral(rng);
            f.dst_port = 8080;
            f.tcp_flags = 2;
        }
        EniRole::Database => {
            f.ingress = true;
            f.src = peer_in_vpc(rng, EniRole::App);
            f.src_port = ephemeral(rng);
            f.dst_port = *pick(rng, &DB_PORTS);
            f.accept = rng.random_bool(0.97);
            f.tcp_flags = 2;
        }
    }
    // Ping and path-MTU discovery.
    if rng.random_bool(0.03) {
        f.protocol = 1;
        f.src_port = 0;
        f.dst_port = 0;
    }
    // Dual-stack interfaces talk IPv6 to the internet part of the time.
    if let Some(v6) = eni.ipv6 {
        let internet_peer = if f.ingress { f.src } else { f.dst };
        let is_internet = matches!(internet_peer, IpAddr::V4(a) if !a.is_private());
        if is_internet && rng.random_bool(0.3) {
            let peer = internet_v6(rng);
            if f.ingress {
                f.src = peer;
                f.dst = IpAddr::V6(v6);
            } else {
                f.src = IpAddr::V6(v6);
                f.dst = peer;
            }
            f.pkt_src = f.src;
            f.dst_service = None;
            if f.protocol == 1 {
                f.protocol = 58;
            }
        }
    }
    if f.pkt_src == me && f.src != me {
        f.pkt_src = f.src;
    }
    f.pkt_dst = f.dst;
    if f.protocol != 6 {
        f.tcp_flags = 0;
    }
    if f.packets == 0 {
        // Heavy-tailed flow sizes: most flows are a handful of packets, a few are bulk transfers.
        let u: f64 = rng.random();
        f.packets = ((1.0 - u).powf(-1.0 / 1.1) as u64).clamp(1, if benign { BENIGN_MAX_PACKETS } else { 2_000_000 });
    }
    let per_packet = match f.protocol {
        // A rejected probe is a bare SYN.
        6 if !f.accept => rng.random_range(40..60),
        6 => rng.random_range(52..1400),
        17 => rng.random_range(60..512),
        _ => 84,
    };
    f.bytes = f.packets * per_packet;
    f
}
