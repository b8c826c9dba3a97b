resource "openstack_blockstorage_volume_v3" "volume" {
  for_each    = var.volumes
  name        = "${var.name_prefix}-${each.key}"
  size        = each.value.size_gb
  volume_type = var.volume_type
  description = "Mounted at ${each.value.mount_point}."
}

resource "openstack_compute_volume_attach_v2" "volume" {
  for_each    = var.volumes
  instance_id = each.value.instance_id
  volume_id   = openstack_blockstorage_volume_v3.volume[each.key].id
}
