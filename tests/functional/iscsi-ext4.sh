#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# datapath-ext4.sh with base and CoW on tgtd LUNs reached through iscsi://.
COWHERD_TEST_ISCSI=1 exec bash "$(dirname "$0")/datapath-ext4.sh"
