#!/bin/sh
echo "main tool"
