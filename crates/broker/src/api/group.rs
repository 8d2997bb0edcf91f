//! The group requests: membership through the [`crate::groups::Coordinator`],
//! committed offsets through [`crate::offsets::Offsets`].

use kafka_protocol::messages::{
    DescribeGroupsResponse, GroupId, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse,
    ListGroupsResponse, OffsetCommitResponse, OffsetFetchResponse, SyncGroupResponse,
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    join_group_response::JoinGroupResponseMember,
    leave_group_response::MemberResponse,
    list_groups_response::ListedGroup,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic},
};

use super::{Body, code, encode, s, topic_name};
use crate::groups;
use crate::request::{JoinGroup, MemberRef, OffsetCommit, SyncGroup};
use crate::shared::Shared;
use crate::store::lock;

/// JoinGroup (held until the round completes).
pub async fn join(
    shared: &Shared,
    req: JoinGroup,
    version: i16,
    client_id: &str,
    peer: &str,
) -> Body {
    let j = shared.groups.join(req, version, client_id, peer).await;
    let members = j
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_group_instance_id(if version >= 5 { instance.map(s) } else { None })
                .with_metadata(metadata)
        })
        .collect();
    encode(
        &JoinGroupResponse::default()
            .with_error_code(j.error)
            .with_generation_id(j.generation)
            .with_protocol_name(Some(s(j.protocol.unwrap_or_default())))
            .with_leader(s(j.leader))
            .with_member_id(s(j.member_id))
            .with_members(members),
        version,
    )
}

/// SyncGroup (held until the leader has sent the assignment).
pub async fn sync(shared: &Shared, req: SyncGroup, version: i16) -> Body {
    let synced = shared.groups.sync(req).await;
    encode(
        &SyncGroupResponse::default()
            .with_error_code(synced.error)
            .with_assignment(synced.assignment),
        version,
    )
}

/// Heartbeat.
pub fn heartbeat(shared: &Shared, member: &MemberRef, version: i16) -> Body {
    encode(
        &HeartbeatResponse::default().with_error_code(shared.groups.heartbeat(member)),
        version,
    )
}

/// LeaveGroup.
pub fn leave(
    shared: &Shared,
    group_id: &str,
    members: &[(String, Option<String>)],
    version: i16,
) -> Body {
    let errors = shared.groups.leave(group_id, members);
    let response = if version >= 3 {
        LeaveGroupResponse::default().with_members(
            members
                .iter()
                .zip(&errors)
                .map(|((id, instance), error)| {
                    MemberResponse::default()
                        .with_member_id(s(id.clone()))
                        .with_group_instance_id(instance.clone().map(s))
                        .with_error_code(*error)
                })
                .collect(),
        )
    } else {
        LeaveGroupResponse::default()
            .with_error_code(errors.first().copied().unwrap_or(groups::code::NONE))
    };
    encode(&response, version)
}

/// OffsetCommit.
pub fn commit(shared: &Shared, req: OffsetCommit, version: i16) -> Body {
    let member_error = shared.groups.may_commit(&req.member);
    let mut accepted = Vec::new();
    let mut topics: Vec<OffsetCommitResponseTopic> = req
        .topics
        .iter()
        .map(|(name, partitions)| {
            let topic = shared.store.topic(name);
            let partitions = partitions
                .iter()
                .map(|(index, offset, metadata)| {
                    let exists = topic
                        .as_ref()
                        .is_some_and(|t| t.partition(*index).is_some());
                    let error = if member_error != code::NONE {
                        member_error
                    } else if !exists {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        accepted.push((name.clone(), *index, *offset, metadata.clone()));
                        code::NONE
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(*index)
                        .with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic_name(name))
                .with_partitions(partitions)
        })
        .collect();
    // Taken before the offsets' lock: the two locks are never held together.
    let protocol_type = shared.groups.protocol_type(&req.member.group_id);
    if !accepted.is_empty()
        && let Err(e) =
            lock(&shared.offsets).commit(&req.member.group_id, protocol_type.as_deref(), &accepted)
    {
        tracing::error!(error = %e, "writing committed offsets failed");
        for t in &mut topics {
            for p in &mut t.partitions {
                if p.error_code == code::NONE {
                    p.error_code = code::UNKNOWN_SERVER_ERROR;
                }
            }
        }
    }
    encode(
        &OffsetCommitResponse::default().with_topics(topics),
        version,
    )
}

/// OffsetFetch: committed offsets, -1 where none is.
pub fn offset_fetch(
    shared: &Shared,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    version: i16,
) -> Body {
    let offsets = lock(&shared.offsets);
    let wanted: Vec<(String, Vec<i32>)> = match topics {
        Some(t) => t,
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for (t, p, _) in offsets.of_group(group_id) {
                by_topic.entry(t).or_default().push(p);
            }
            by_topic.into_iter().collect()
        }
    };
    let topics = wanted
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    let (offset, metadata) = offsets
                        .get(group_id, &name, p)
                        .cloned()
                        .unwrap_or((-1, None));
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(-1)
                        .with_metadata(Some(s(metadata.unwrap_or_default())))
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    encode(&OffsetFetchResponse::default().with_topics(topics), version)
}

/// DescribeGroups.
pub fn describe(shared: &Shared, groups: &[String], version: i16) -> Body {
    let described = groups
        .iter()
        .map(|g| {
            let d = shared.groups.describe(g);
            let offsets = lock(&shared.offsets);
            let has_offsets = !offsets.of_group(g).is_empty();
            // A group known only by its committed offsets is Empty, with the
            // protocol type its members had (none when it only ever committed).
            let (state, protocol_type) = if d.state == "Dead" && has_offsets {
                ("Empty", offsets.protocol_type(g).to_owned())
            } else {
                (d.state, d.protocol_type)
            };
            drop(offsets);
            DescribedGroup::default()
                .with_group_id(GroupId(s(g.clone())))
                .with_group_state(s(state))
                .with_protocol_type(s(protocol_type))
                .with_protocol_data(s(d.protocol))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|(id, instance, client, host, meta, assignment)| {
                            DescribedGroupMember::default()
                                .with_member_id(s(id))
                                .with_group_instance_id(if version >= 4 {
                                    instance.map(s)
                                } else {
                                    None
                                })
                                .with_client_id(s(client))
                                .with_client_host(s(host))
                                .with_member_metadata(meta)
                                .with_member_assignment(assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    encode(
        &DescribeGroupsResponse::default().with_groups(described),
        version,
    )
}

/// ListGroups: groups with members, and groups known only by committed offsets.
pub fn list(shared: &Shared, version: i16) -> Body {
    let mut listed = shared.groups.list();
    let offsets = lock(&shared.offsets);
    for g in offsets.groups() {
        if !listed.iter().any(|(name, _, _)| *name == g) {
            let protocol_type = offsets.protocol_type(&g).to_owned();
            listed.push((g, protocol_type, "Empty"));
        }
    }
    drop(offsets);
    listed.sort();
    encode(
        &ListGroupsResponse::default().with_groups(
            listed
                .into_iter()
                .map(|(name, protocol_type, _)| {
                    ListedGroup::default()
                        .with_group_id(GroupId(s(name)))
                        .with_protocol_type(s(protocol_type))
                })
                .collect(),
        ),
        version,
    )
}
